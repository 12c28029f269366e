/* proc.h -- what /proc tells about processes on this machine (Linux): the
 * boot, the pid namespace and a process's start time, which together prove a
 * process of this machine gone (redis/rs_reap.c). Each call reads /proc
 * afresh; no state, any thread. Elsewhere than Linux each yields "" or 0,
 * which proves nothing. */
#ifndef WH_PROC_H
#define WH_PROC_H

#include <stddef.h>

/* The boot id (/proc/sys/kernel/random/boot_id) into out (n bytes), without
 * the newline; "" when it cannot be read. */
void wh_proc_boot_id(char *out, size_t n);

/* This process's pid namespace, as /proc/self/ns/pid names it
 * ("pid:[4026531836]"), into out (n bytes); "" when it cannot be read. */
void wh_proc_pid_namespace(char *out, size_t n);

/* Field 22 of /proc/<pid>/stat: the process's start time in clock ticks
 * since boot. 0 if the process does not exist. */
unsigned long long wh_proc_start_ticks(long pid);

#endif
