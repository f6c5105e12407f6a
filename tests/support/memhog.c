/* memhog: fills N MiB with a pattern derived from a seed, then re-verifies it forever.
 * Each round writes "ok <round> <checksum>" to the status file; a mismatch writes
 * "CORRUPT ..." and exits 1. Used to prove memory survives checkpoint/restore.
 *
 * With CHURN_PCT (0..100), every round after the first starts by rewriting the first CHURN_PCT
 * percent of the memory: the random words get new values (the generator goes on from where the
 * fill left it), the repeating ones keep their pattern, and the expected checksum follows. So a
 * busy container changes that share of its memory between two backups, and verification still
 * proves nothing else changed. Without it, the memory never changes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) { fprintf(stderr, "usage: memhog MIB STATUS_FILE [CHURN_PCT]\n"); return 2; }
    size_t mib = strtoul(argv[1], 0, 10);
    size_t words = mib * 1024 * 1024 / 8;
    size_t churn = 0;
    if (argc == 4) {
        char *end;
        unsigned long pct = strtoul(argv[3], &end, 10);
        if (*argv[3] == 0 || *end != 0 || pct > 100) { fprintf(stderr, "memhog: CHURN_PCT must be 0..100\n"); return 2; }
        churn = words / 100 * pct + words % 100 * pct / 100;
    }
    uint64_t *buf = malloc(words * 8);
    if (!buf) { perror("malloc"); return 1; }
    uint64_t seed = 0x9e3779b97f4a7c15ULL, sum = 0;
    for (size_t i = 0; i < words; i++) {
        /* Half the memory compressible (repeating), half random. */
        buf[i] = (i & 1) ? next(&seed) : (uint64_t)(i / 512);
        sum += buf[i] * (i | 1);
    }
    for (unsigned long round = 1;; round++) {
        if (round > 1) {
            /* Only the odd (random) words change; the sum is kept modulo 2^64 like the check. */
            for (size_t i = 1; i < churn; i += 2) {
                uint64_t v = next(&seed);
                sum += (v - buf[i]) * (i | 1);
                buf[i] = v;
            }
        }
        uint64_t check = 0;
        for (size_t i = 0; i < words; i++) check += buf[i] * (i | 1);
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
        FILE *f = fopen(tmp, "w");
        if (!f) { perror("status"); return 1; }
        if (check != sum) {
            fprintf(f, "CORRUPT %lu %llx %llx\n", round, (unsigned long long)check, (unsigned long long)sum);
            fclose(f); rename(tmp, argv[2]);
            return 1;
        }
        fprintf(f, "ok %lu %llx\n", round, (unsigned long long)check);
        fclose(f);
        rename(tmp, argv[2]);
        usleep(50000);
    }
}
