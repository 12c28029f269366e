/* proc.c -- see proc.h. */
#include "core/proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void read_first_line(const char *path, char *out, size_t n) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fgets(out, (int)n, f)) out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

void wh_proc_boot_id(char *out, size_t n) { read_first_line("/proc/sys/kernel/random/boot_id", out, n); }

unsigned long long wh_proc_start_ticks(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (!p) return 0;
    unsigned long long v = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        if (++field == 22) { v = strtoull(tok, NULL, 10); break; }
    }
    return v;
}

void wh_proc_pid_namespace(char *out, size_t n) {
    ssize_t k = readlink("/proc/self/ns/pid", out, n - 1);
    out[k > 0 ? (size_t)k : 0] = '\0';
}
