/*
 * What one `stat` of a transcript costs the kernel, two ways: `fstatat` (what
 * the listing calls) and `statx` asking only for the fields the listing uses.
 * Each path is looked up from the projects directory's handle, as the listing
 * does. Prints the median over PASSES warm passes, in microseconds per call.
 *
 *   cc -O2 -o /tmp/stat_calls benches/stat_calls.c
 *   (cd c7/.claude/projects && find . -mindepth 1 | cut -c3-) \
 *     | /tmp/stat_calls c7/.claude/projects
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define PASSES 200
#define MAX_PATHS 100000

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: stat_calls PROJECTS_DIR < relative paths\n");
        return 2;
    }
    int dir = open(argv[1], O_PATH | O_DIRECTORY);
    if (dir < 0) {
        perror(argv[1]);
        return 1;
    }
    static char *paths[MAX_PATHS];
    static char line[4096];
    int n = 0;
    while (n < MAX_PATHS && fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        paths[n++] = strdup(line);
    }
    if (n == 0) {
        fprintf(stderr, "no paths on stdin\n");
        return 1;
    }
    static double with_fstatat[PASSES], with_statx[PASSES];
    unsigned long long sizes = 0;
    for (int pass = 0; pass < PASSES; pass++) {
        double start = now_us();
        for (int i = 0; i < n; i++) {
            struct stat st;
            if (fstatat(dir, paths[i], &st, 0) == 0) sizes += st.st_size;
        }
        with_fstatat[pass] = (now_us() - start) / n;
        start = now_us();
        for (int i = 0; i < n; i++) {
            struct statx sx;
            unsigned mask = STATX_TYPE | STATX_INO | STATX_SIZE | STATX_MTIME | STATX_CTIME;
            if (statx(dir, paths[i], AT_STATX_DONT_SYNC, mask, &sx) == 0) sizes += sx.stx_size;
        }
        with_statx[pass] = (now_us() - start) / n;
    }
    qsort(with_fstatat, PASSES, sizeof(double), by_value);
    qsort(with_statx, PASSES, sizeof(double), by_value);
    printf("%d paths, median of %d passes: fstatat %.3f us, statx (5 fields) %.3f us (%llu)\n", n,
           PASSES, with_fstatat[PASSES / 2], with_statx[PASSES / 2], sizes);
    return 0;
}
