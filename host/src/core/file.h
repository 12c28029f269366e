/* file.h -- reading a whole file: the config, worker scripts and modules,
 * the CLI's --bulk input. Any thread; no state. */
#ifndef WH_FILE_H
#define WH_FILE_H

#include <stddef.h>

#include "core/buf.h"

/* Appends the whole content of path ("-": standard input) to out, at most
 * max bytes (0: no limit). Returns 0, or an errno value: that of open or
 * read, EISDIR for a folder, EFBIG past max (out then holds part of it:
 * discard it). The caller words the message. */
int wh_file_read(const char *path, size_t max, wh_buf *out);

#endif
