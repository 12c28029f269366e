/* mem.h -- allocation for host C code: these never return NULL (h2o's
 * h2o_mem_alloc, neovim's _or_die), so callers never check for NULL. Lua VMs
 * use their own limited allocator (lua/vm.c), not these.
 *
 * When the system refuses (a process limit: `ulimit -v`, a cgroup's
 * memory.max), they do not abort at once: they wait for memory to come
 * back, for up to 10 s, retrying, and only then abort ("out of memory
 * allocating N bytes"). Meanwhile wh_mem_starving() is true, and every VM
 * refuses to grow, so the jobs that hold the memory fail as out of memory
 * and give it back. Thread-safe. Code that runs on behalf of a job, in the
 * job's own thread, must not wait for that job's memory: it allocates with
 * malloc and fails the job instead (see wh_lcall_error_nomem). */
#ifndef WH_MEM_H
#define WH_MEM_H

#include <stdbool.h>
#include <stddef.h>

void *wh_xmalloc(size_t n);              /* returns owned memory; free with wh_free */
void *wh_xcalloc(size_t n, size_t size); /* zeroed; free with wh_free */
void *wh_xrealloc(void *p, size_t n);    /* invalidates p; returns owned memory */
char *wh_xstrdup(const char *s);         /* returns an owned copy; NULL in, NULL out */
char *wh_xstrndup(const char *s, size_t n); /* copies n bytes and adds a NUL */
void wh_free(void *p);                   /* accepts NULL; keeps errno intact */

/* True while a host allocation waits for memory the system refused. Any
 * thread; a relaxed atomic read. */
bool wh_mem_starving(void);

#endif
