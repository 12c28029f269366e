/* pidfile.h -- <root>/tmp/workerhost.pid, the pid of `workerhost run`:
 * written at start, removed at exit if it is still ours; `workerhost
 * reload` and `workerhost stats` read it to find the running host. */
#ifndef WH_CLI_PIDFILE_H
#define WH_CLI_PIDFILE_H

#include "config/config.h"

/* Writes <root>/tmp/workerhost.pid (creating tmp/); returns its owned path
 * for wh_pidfile_remove, or NULL (logged) when it cannot be written. */
char *wh_pidfile_write(const wh_config *cfg);
/* Removes the pid file if it still holds this process's pid; frees path
 * (NULL accepted). */
void wh_pidfile_remove(char *path);
/* The pid in the file at path, or -1 when it cannot be read. */
long wh_pidfile_read(const char *path);

#endif
