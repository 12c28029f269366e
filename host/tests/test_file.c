/* test_file.c -- core/file: a whole file, a folder, a missing file, a limit. */
#include <errno.h>

#include "core/file.h"
#include "test.h"

static void test_read(void) {
    char dir[] = "/tmp/wh_test_file_XXXXXX";
    if (mkdtemp(dir) == NULL) WH_TEST_FAIL("mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/f", dir);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    for (int i = 0; i < 100000; i++) fputs("0123456789", f); /* 1,000,000 bytes: several reads */
    fputc('\0', f);                                        /* a NUL is kept */
    fclose(f);
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, "x"); /* appended after what is there */
    ASSERT_EQ_INT(wh_file_read(path, 0, &b), 0);
    ASSERT_EQ_INT(b.len, 1 + 1000001);
    ASSERT(b.data[0] == 'x' && b.data[1] == '0' && b.data[1000000] == '9' && b.data[1000001] == '\0');
    wh_buf_free(&b);
    ASSERT_EQ_INT(wh_file_read(path, 1000, &b), EFBIG);
    wh_buf_free(&b);
    ASSERT_EQ_INT(wh_file_read(dir, 0, &b), EISDIR);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none", dir);
    ASSERT_EQ_INT(wh_file_read(missing, 0, &b), ENOENT);
    wh_buf_free(&b);
    remove(path);
    rmdir(dir);
}

int main(void) {
    RUN(test_read);
    return TEST_REPORT();
}
