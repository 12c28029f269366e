/* test.h -- a tiny test harness for the C unit tests (one executable per
 * module, registered with ctest by wh_add_c_test in CMakeLists.txt).
 *
 *   static void test_something(void) { ASSERT_EQ_INT(1 + 1, 2); }
 *   int main(void) { RUN(test_something); return TEST_REPORT(); }
 *
 * Failed assertions print both values (libuv's ASSERT_EQ) and return from the
 * test function; the remaining tests still run. */
#ifndef WH_TEST_H
#define WH_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int wh_test_failures;
static int wh_test_current_failed;
static int wh_test_count;

#define WH_TEST_FAIL(...)                                                      \
    do {                                                                       \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                      \
        fprintf(stderr, __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                   \
        wh_test_current_failed = 1;                                            \
        return;                                                                \
    } while (0)

#define ASSERT(cond)                                                           \
    do { if (!(cond)) WH_TEST_FAIL("assertion failed: %s", #cond); } while (0)

#define ASSERT_EQ_INT(a, b)                                                    \
    do {                                                                       \
        long long wh_a_ = (long long)(a), wh_b_ = (long long)(b);              \
        if (wh_a_ != wh_b_)                                                    \
            WH_TEST_FAIL("%s == %s: %lld != %lld", #a, #b, wh_a_, wh_b_);      \
    } while (0)

#define ASSERT_EQ_DBL(a, b)                                                    \
    do {                                                                       \
        double wh_a_ = (double)(a), wh_b_ = (double)(b);                       \
        if (wh_a_ != wh_b_)                                                    \
            WH_TEST_FAIL("%s == %s: %.17g != %.17g", #a, #b, wh_a_, wh_b_);    \
    } while (0)

#define ASSERT_STREQ(a, b)                                                     \
    do {                                                                       \
        const char *wh_a_ = (a), *wh_b_ = (b);                                 \
        if (wh_a_ == NULL || wh_b_ == NULL || strcmp(wh_a_, wh_b_) != 0)        \
            WH_TEST_FAIL("%s == %s:\n    got:      \"%s\"\n    expected: \"%s\"", \
                         #a, #b, wh_a_ ? wh_a_ : "(null)", wh_b_ ? wh_b_ : "(null)"); \
    } while (0)

#define ASSERT_CONTAINS(hay, needle)                                           \
    do {                                                                       \
        const char *wh_h_ = (hay), *wh_n_ = (needle);                          \
        if (wh_h_ == NULL || strstr(wh_h_, wh_n_) == NULL)                     \
            WH_TEST_FAIL("%s contains %s:\n    text: \"%s\"\n    missing: \"%s\"", \
                         #hay, #needle, wh_h_ ? wh_h_ : "(null)", wh_n_);      \
    } while (0)

#define RUN(fn)                                                                \
    do {                                                                       \
        wh_test_current_failed = 0;                                            \
        wh_test_count++;                                                       \
        fn();                                                                  \
        if (wh_test_current_failed) {                                          \
            wh_test_failures++;                                                \
            fprintf(stderr, "FAIL %s\n", #fn);                                 \
        } else {                                                               \
            fprintf(stderr, "ok   %s\n", #fn);                                 \
        }                                                                      \
    } while (0)

#define TEST_REPORT()                                                          \
    (fprintf(stderr, "%d passed, %d failed\n", wh_test_count - wh_test_failures, \
             wh_test_failures),                                                \
     wh_test_failures ? 1 : 0)

/* Removes path: a file, or a folder and everything under it (no links
 * followed). For the temporary app roots tests make. */
static inline void wh_test_rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *sub = malloc(n);
            if (sub == NULL) break;
            snprintf(sub, n, "%s/%s", path, e->d_name);
            wh_test_rm_tree(sub);
            free(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

#endif
