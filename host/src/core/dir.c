/* dir.c -- see dir.h. */
#include "core/dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int wh_dir_list_lua(const char *dir, char ***out, size_t *nout, wh_err *err) {
    DIR *d = opendir(dir);
    if (d == NULL) return wh_err_set(err, WH_EIO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || e->d_name[0] == '.' || strcmp(e->d_name + len - 4, ".lua") != 0) continue;
        if (n == cap) names = wh_xrealloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
        names[n++] = wh_xstrdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    *nout = n;
    return 0;
}

void wh_dir_free_list(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) wh_free(names[i]);
    wh_free(names);
}
