/* test_watch.c -- the file watch behind workers.reload: an editor-style save
 * (write a temp file, rename it over), many files at once, a new file, a
 * removed file and a new folder each make one call; editor temp files make
 * none; a folder created after the start is watched too.
 * "One call" is checked by waiting well past the debounce for a second one
 * that must not come; no timing is asserted otherwise.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/watch.h"
#include "core/log.h"
#include "test.h"

static char root[256];
static atomic_int calls;

static void on_change(void *ud) {
    (void)ud;
    atomic_fetch_add(&calls, 1);
}

static void path_of(char *out, size_t n, const char *rel) { snprintf(out, n, "%s/%s", root, rel); }

static void put(const char *rel, const char *text) {
    char p[512];
    path_of(p, sizeof p, rel);
    FILE *f = fopen(p, "w");
    if (f == NULL) abort();
    fputs(text, f);
    fclose(f);
}

static void editor_save(const char *rel, const char *text) {
    char tmp[256], p[512], t[512];
    snprintf(tmp, sizeof tmp, "%s.swx", rel);
    put(tmp, text);
    path_of(p, sizeof p, rel);
    path_of(t, sizeof t, tmp);
    if (rename(t, p) != 0) abort();
}

/* Waits (up to 30 s) for the count to reach want, then 1 s more for any
 * call too many; returns the count. */
static int settle(int want) {
    for (int i = 0; i < 1500 && atomic_load(&calls) < want; i++) usleep(20000);
    usleep(1000000);
    return atomic_load(&calls);
}

static void test_watch(void) {
    snprintf(root, sizeof root, "/tmp/wh_test_watch_XXXXXX");
    if (mkdtemp(root) == NULL) abort();
    char workers[300], lib[300], sub[300];
    snprintf(workers, sizeof workers, "%s/workers", root);
    snprintf(lib, sizeof lib, "%s/lib", root);
    mkdir(workers, 0755);
    mkdir(lib, 0755);
    put("workers/a.lua", "return 1\n");

    const char *flat[] = {workers, NULL};
    const char *tree[] = {lib, NULL};
    wh_watch_options o = {flat, tree, 0.3, on_change, NULL};
    wh_watch *w = NULL;
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_watch_start(&o, &w, &err), 0);
    ASSERT_EQ_INT((int)wh_watch_count(w), 2);

    /* an editor's save: temp file, then rename over the script */
    editor_save("workers/a.lua", "return 2\n");
    ASSERT_EQ_INT(settle(1), 1);

    /* a checkout of many files at once */
    for (int i = 0; i < 40; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "workers/w%02d.lua", i);
        put(rel, "return 3\n");
    }
    ASSERT_EQ_INT(settle(2), 2);

    /* editor temp and back-up files alone: nothing */
    put("workers/.a.lua.swp", "x");
    put("workers/a.lua~", "x");
    put("workers/4913", "x");
    ASSERT_EQ_INT(settle(2), 2);

    /* a new file, then a removed one */
    put("workers/new.lua", "return 4\n");
    ASSERT_EQ_INT(settle(3), 3);
    char p[512];
    path_of(p, sizeof p, "workers/new.lua");
    unlink(p);
    ASSERT_EQ_INT(settle(4), 4);

    /* a new folder under lib, with a module: one call; then the folder is
     * watched, so a change inside it is seen too */
    snprintf(sub, sizeof sub, "%s/lib/sub", root);
    mkdir(sub, 0755);
    put("lib/sub/m.lua", "return {}\n");
    ASSERT_EQ_INT(settle(5), 5);
    ASSERT_EQ_INT((int)wh_watch_count(w), 3);
    editor_save("lib/sub/m.lua", "return { v = 2 }\n");
    ASSERT_EQ_INT(settle(6), 6);

    wh_watch_stop(w);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
}

static void test_missing_folders_are_skipped(void) {
    const char *flat[] = {"/nonexistent/wh/workers", NULL};
    wh_watch_options o = {flat, flat, 0, on_change, NULL};
    wh_watch *w = NULL;
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_watch_start(&o, &w, &err), 0);
    ASSERT_EQ_INT((int)wh_watch_count(w), 0);
    wh_watch_stop(w);
    wh_watch_stop(NULL);
}

int main(void) {
    alarm(300);
    wh_log_setup(WH_LOG_ERROR, WH_LOG_TEXT);
    RUN(test_watch);
    RUN(test_missing_folders_are_skipped);
    return TEST_REPORT();
}
