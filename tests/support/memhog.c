/* memhog: fills N MiB with a pattern derived from a seed, then re-verifies it forever.
 * Each round writes "ok <round> <checksum>" to the status file; a mismatch writes
 * "CORRUPT ..." and exits 1. Used to prove memory survives checkpoint/restore. */
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
    if (argc != 3) { fprintf(stderr, "usage: memhog MIB STATUS_FILE\n"); return 2; }
    size_t mib = strtoul(argv[1], 0, 10);
    size_t words = mib * 1024 * 1024 / 8;
    uint64_t *buf = malloc(words * 8);
    if (!buf) { perror("malloc"); return 1; }
    uint64_t seed = 0x9e3779b97f4a7c15ULL, sum = 0;
    for (size_t i = 0; i < words; i++) {
        /* Half the memory compressible (repeating), half random. */
        buf[i] = (i & 1) ? next(&seed) : (uint64_t)(i / 512);
        sum += buf[i] * (i | 1);
    }
    for (unsigned long round = 1;; round++) {
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
