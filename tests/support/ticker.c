/* ticker: counts ticks of about 1 ms and records the longest gap between two ticks, as seen
 * from inside the container (CLOCK_MONOTONIC keeps running while the cgroup is frozen).
 * Every 20 ticks it writes "<ticks> <longest gap in microseconds>" to the status file. Used to
 * check that a backup stops the container no longer than the freeze time it reports. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: ticker STATUS_FILE\n"); return 2; }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    long long prev = now_us(), longest = 0;
    for (unsigned long long ticks = 1;; ticks++) {
        usleep(1000);
        long long t = now_us();
        if (t - prev > longest) longest = t - prev;
        prev = t;
        if (ticks % 20 == 0) {
            FILE *f = fopen(tmp, "w");
            if (!f) { perror("status"); return 1; }
            fprintf(f, "%llu %lld\n", ticks, longest);
            fclose(f);
            rename(tmp, argv[1]);
        }
    }
}
