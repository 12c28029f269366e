/* mem.h -- allocation for host C code: these abort on out-of-memory (h2o's
 * h2o_mem_alloc, neovim's _or_die), so callers never check for NULL. Lua VMs
 * use their own limited allocator (lua/vm.c), not these. */
#ifndef WH_MEM_H
#define WH_MEM_H

#include <stddef.h>

void *wh_xmalloc(size_t n);              /* returns owned memory; free with wh_free */
void *wh_xcalloc(size_t n, size_t size); /* zeroed; free with wh_free */
void *wh_xrealloc(void *p, size_t n);    /* invalidates p; returns owned memory */
char *wh_xstrdup(const char *s);         /* returns an owned copy; NULL in, NULL out */
char *wh_xstrndup(const char *s, size_t n); /* copies n bytes and adds a NUL */
void wh_free(void *p);                   /* accepts NULL; keeps errno intact */

#endif
