/* dir.h -- listing worker scripts. */
#ifndef WH_DIR_H
#define WH_DIR_H

#include <stddef.h>

#include "core/err.h"

/* Lists the NAME.lua files of dir (not recursive, no dot files), sorted by
 * name. On success *names is an owned array of n owned names (free with
 * wh_dir_free_list). Returns 0, or WH_EIO when dir cannot be opened (err
 * says why). */
int wh_dir_list_lua(const char *dir, char ***names, size_t *n, wh_err *err);
void wh_dir_free_list(char **names, size_t n);

#endif
