/* module.c -- the entry point of build/lua/workerhost.so, so that a plain
 * lua5.4 (busted, scripts) can `require "workerhost"`. It also makes
 * "workerhost.testing" requirable. */
#include <lauxlib.h>

#include "lua/lmodule.h"

int luaopen_workerhost(lua_State *L);
int luaopen_workerhost_testing(lua_State *L);

int luaopen_workerhost(lua_State *L) {
    wh_lmodule_preload(L);
    return wh_lmodule_open(L);
}

/* require "workerhost.testing" first: Lua's all-in-one loader finds it in
 * workerhost.so under this name. */
int luaopen_workerhost_testing(lua_State *L) {
    wh_lmodule_preload(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "workerhost.testing");
    lua_call(L, 1, 1);
    return 1;
}
