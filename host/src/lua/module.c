/* module.c -- the entry point of build/lua/workerhost.so, so that a plain
 * lua5.4 (busted, scripts) can `require "workerhost"`. It also makes
 * "workerhost.testing" requirable. */
#include <lauxlib.h>

#include "lua/lmodule.h"

int luaopen_workerhost(lua_State *L);

int luaopen_workerhost(lua_State *L) {
    wh_lmodule_preload(L);
    return wh_lmodule_open(L);
}
