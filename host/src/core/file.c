/* file.c -- see file.h. */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int wh_file_read(const char *path, size_t max, wh_buf *out) {
    bool in = strcmp(path, "-") == 0;
    int fd = in ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
        if (!in) close(fd);
        return e;
    }
    size_t start = out->len;
    int e = 0;
    for (;;) {
        wh_buf_reserve(out, 65536);
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            e = errno;
            break;
        }
        if (n == 0) break;
        if (max && out->len - start + (size_t)n > max) {
            e = EFBIG;
            break;
        }
        out->len += (size_t)n;
        out->data[out->len] = '\0';
    }
    if (!in) close(fd);
    return e;
}
