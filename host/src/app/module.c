/* module.c -- the entry point of build/lua/workerhost.so, so that a plain
 * lua5.4 (busted, scripts) can `require "workerhost"`. It also makes
 * "workerhost.testing" and "workerhost.connect" requirable. It lives in
 * app/ because it opens workerhost.connect (app/connect.h), which the
 * workerhost module (lua/) takes from package.preload. */
#include <lauxlib.h>

#include "app/connect.h"
#include "lua/lmodule.h"

int luaopen_workerhost(lua_State *L);
int luaopen_workerhost_testing(lua_State *L);
int luaopen_workerhost_connect(lua_State *L);

/* Puts "workerhost", "workerhost.testing" and "workerhost.connect" in
 * package.preload. */
static void preload(lua_State *L) {
    wh_lmodule_preload(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, wh_connect_open);
    lua_setfield(L, -2, "workerhost.connect");
    lua_pop(L, 1);
}

int luaopen_workerhost(lua_State *L) {
    preload(L);
    return wh_lmodule_open(L);
}

/* require "workerhost.testing" first: Lua's all-in-one loader finds it in
 * workerhost.so under this name. */
int luaopen_workerhost_testing(lua_State *L) {
    preload(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "workerhost.testing");
    lua_call(L, 1, 1);
    return 1;
}

/* require "workerhost.connect" first: found in workerhost.so the same way. */
int luaopen_workerhost_connect(lua_State *L) {
    preload(L);
    return wh_connect_open(L);
}
