/* lcall.h -- the one way C calls into Lua.
 *
 * wh_lcall_pcall is lua.c's docall with neovim's nlua_pcall manners: it
 * installs a message handler that adds a traceback, turns a failure into a
 * wh_err, and leaves the stack balanced (on error nothing is left; on success
 * the nres results). Every call from C into Lua in workerhost goes through it.
 */
#ifndef WH_LCALL_H
#define WH_LCALL_H

#include <lua.h>

#include "core/err.h"

/* Calls the function below the nargs arguments on top of L's stack.
 * On success returns 0 with nres results pushed. On failure pops everything
 * it was given and returns `code` (the caller chooses: WH_ESCRIPT while
 * loading scripts, WH_EJOB while running a job), or WH_ENOMEM when Lua ran
 * out of memory (or wh_lcall_error_nomem raised); err->msg holds the error message (a non-string error value
 * is rendered with tostring), and *traceback (if not NULL) receives an owned
 * copy of the traceback text, free with wh_free. [-(nargs+1), +(nres|0), -] */
int wh_lcall_pcall(lua_State *L, int nargs, int nres, int code, char **traceback, wh_err *err);

/* Raises "not enough memory" in L for an allocation the host failed to make
 * on behalf of the running Lua code (converting a job's arguments, say): a
 * script's pcall sees the same message as for a Lua allocation failure, and
 * the wh_lcall_pcall that is running the code returns WH_ENOMEM, as when Lua
 * itself runs out of memory. Never returns. [-0, +0, v] */
int wh_lcall_error_nomem(lua_State *L);

#endif
