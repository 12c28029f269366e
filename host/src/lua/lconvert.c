/* lconvert.c -- see lconvert.h. */
#include "lua/lconvert.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "core/mem.h"

const char wh_lconvert_array_mt_key = 0;

#define MAX_DEPTH WH_JSON_DEFAULT_MAX_DEPTH

void wh_lconvert_push_array_mt(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &wh_lconvert_array_mt_key) == LUA_TTABLE) return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &wh_lconvert_array_mt_key);
}

/* ==== JSON -> Lua ========================================================= */

static void push_object(lua_State *L, const wh_json *v, const wh_type *t);

void wh_lconvert_push(lua_State *L, const wh_json *v, const wh_type *t) {
    luaL_checkstack(L, 4, "JSON nesting");
    if (t && t->kind == WH_T_ANY) t = NULL;
    switch (v->type) {
    case WH_JSON_NULL:
        if (t && t->default_value) wh_lconvert_push(L, t->default_value, t);
        else lua_pushlightuserdata(L, NULL);
        break;
    case WH_JSON_FALSE: lua_pushboolean(L, 0); break;
    case WH_JSON_TRUE: lua_pushboolean(L, 1); break;
    case WH_JSON_INT: lua_pushinteger(L, (lua_Integer)v->u.i); break;
    case WH_JSON_FLOAT: lua_pushnumber(L, (lua_Number)v->u.f.d); break;
    case WH_JSON_STRING: lua_pushlstring(L, v->u.str.s, v->u.str.len); break;
    case WH_JSON_ARRAY: {
        const wh_type *it = (t && t->kind == WH_T_ARRAY) ? t->items : NULL;
        size_t n = v->u.arr.n;
        lua_createtable(L, n > INT_MAX ? INT_MAX : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            wh_lconvert_push(L, &v->u.arr.items[i], it);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        if (n == 0 && t == NULL) {
            wh_lconvert_push_array_mt(L);
            lua_setmetatable(L, -2);
        }
        break;
    }
    case WH_JSON_OBJECT: push_object(L, v, (t && t->kind == WH_T_OBJECT) ? t : NULL); break;
    }
}

static void push_object(lua_State *L, const wh_json *v, const wh_type *t) {
    size_t n = v->u.obj.n;
    lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n);
    for (size_t i = 0; i < n; i++) {
        const wh_json_member *m = &v->u.obj.members[i];
        const wh_field *f = t ? wh_type_field(t, m->key, m->key_len) : NULL;
        if (m->value.type == WH_JSON_NULL && f && f->type->kind != WH_T_ANY) {
            if (f->type->default_value == NULL) continue; /* optional field: nil */
            wh_lconvert_push(L, f->type->default_value, f->type);
        } else {
            wh_lconvert_push(L, &m->value, f ? f->type : NULL);
        }
        lua_pushlstring(L, m->key, m->key_len);
        lua_insert(L, -2);
        lua_rawset(L, -3);
    }
    if (t == NULL) return;
    for (size_t k = 0; k < t->nfields; k++) { /* defaults of absent fields */
        const wh_field *f = &t->fields[k];
        if (f->type->default_value == NULL) continue;
        if (wh_json_get(v, f->name, f->name_len)) continue;
        lua_pushlstring(L, f->name, f->name_len);
        wh_lconvert_push(L, f->type->default_value, f->type);
        lua_rawset(L, -3);
    }
}

void wh_lconvert_push_payload_args(lua_State *L, const wh_schema *s, const wh_json *args) {
    switch (wh_schema_shape(s)) {
    case WH_ARGS_NONE: lua_createtable(L, 0, 0); return;
    case WH_ARGS_NAMED:
        if (args->u.arr.n == 0) {
            static const wh_json empty = {.type = WH_JSON_OBJECT};
            push_object(L, &empty, wh_schema_root(s));
        } else {
            push_object(L, &args->u.arr.items[0], wh_schema_root(s));
        }
        return;
    case WH_ARGS_POSITIONAL: {
        size_t n = args->u.arr.n, np = wh_schema_npositional(s);
        lua_createtable(L, (int)np, 0);
        for (size_t i = 0; i < np; i++) {
            const wh_type *t = wh_schema_positional(s, i);
            if (i < n && args->u.arr.items[i].type != WH_JSON_NULL) {
                wh_lconvert_push(L, &args->u.arr.items[i], t);
            } else if (t->default_value) {
                wh_lconvert_push(L, t->default_value, t);
            } else if (i < n && t->kind == WH_T_ANY) {
                lua_pushlightuserdata(L, NULL);
            } else {
                continue; /* absent optional argument: nil */
            }
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return;
    }
    }
}

/* ==== Lua -> JSON ========================================================= */

static int conv(lua_State *L, int idx, const wh_type *t, wh_json_doc *doc, wh_json *out, wh_buf *path,
                int depth, wh_err *err);

static int conv_fail(wh_err *err, const wh_buf *path, const char *what) {
    return wh_err_set(err, WH_EARGS, "%s: %s", wh_buf_cstr(path), what);
}

/* The conversion runs on behalf of the job, in its thread: an allocation
 * the system refuses fails the job (WH_ENOMEM) instead of waiting for
 * memory the job itself holds. */
static int conv_nomem(wh_err *err, const wh_buf *path) {
    return wh_err_set(err, WH_ENOMEM, "%s: not enough memory to convert the arguments", wh_buf_cstr(path));
}

/* Classifies a table: returns 1 for a sequence 1..n (n >= 0 sets *n), 0 for
 * string keys only, -1 for anything else. Empty tables count as sequences
 * with n = 0. */
static int table_shape(lua_State *L, int idx, size_t *n) {
    size_t count = 0, strings = 0;
    lua_Integer maxi = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TSTRING) strings++;
        else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            lua_Integer k = lua_tointeger(L, -1);
            if (k > maxi) maxi = k;
        } else {
            lua_pop(L, 1);
            return -1;
        }
    }
    *n = count;
    if (strings == count) return count == 0 ? 1 : 0;
    if (strings == 0 && (size_t)maxi == count) return 1;
    return -1;
}

static int conv_table(lua_State *L, int idx, const wh_type *t, wh_json_doc *doc, wh_json *out,
                      wh_buf *path, int depth, wh_err *err) {
    if (depth >= MAX_DEPTH) return conv_fail(err, path, "nesting deeper than 64 (a table that contains itself?)");
    luaL_checkstack(L, 6, "converting arguments");
    size_t n = 0;
    int shape = table_shape(L, idx, &n);
    if (shape < 0) return conv_fail(err, path, "a table mixing list items and named fields (or a sparse list) cannot be sent as a job argument");
    bool as_array;
    if (n == 0) {
        if (t && t->kind == WH_T_ARRAY) as_array = true;
        else if (t && t->kind == WH_T_OBJECT) as_array = false;
        else {
            as_array = false;
            if (lua_getmetatable(L, idx)) {
                wh_lconvert_push_array_mt(L);
                as_array = lua_rawequal(L, -1, -2);
                lua_pop(L, 2);
            }
        }
    } else {
        as_array = shape == 1;
    }
    size_t base = path->len;
    if (as_array) {
        out->type = WH_JSON_ARRAY;
        out->u.arr.n = n;
        out->u.arr.items = n ? wh_json_doc_try_alloc(doc, n * sizeof(wh_json)) : NULL;
        if (n && out->u.arr.items == NULL) return conv_nomem(err, path);
        const wh_type *it = (t && t->kind == WH_T_ARRAY) ? t->items : NULL;
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i + 1);
            wh_buf_printf(path, "[%zu]", i + 1);
            int rc = conv(L, lua_gettop(L), it, doc, &out->u.arr.items[i], path, depth + 1, err);
            lua_pop(L, 1);
            path->len = base;
            path->data[base] = '\0';
            if (rc) return rc;
        }
        return 0;
    }
    out->type = WH_JSON_OBJECT;
    out->u.obj.n = n;
    out->u.obj.members = n ? wh_json_doc_try_alloc(doc, n * sizeof(wh_json_member)) : NULL;
    if (n && out->u.obj.members == NULL) return conv_nomem(err, path);
    const wh_type *ot = (t && t->kind == WH_T_OBJECT) ? t : NULL;
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        wh_json_member *m = &out->u.obj.members[i++];
        m->key = wh_json_doc_try_strndup(doc, k, klen);
        m->key_len = klen;
        if (m->key == NULL) {
            lua_pop(L, 2);
            return conv_nomem(err, path);
        }
        wh_buf_putc(path, '.');
        wh_buf_append(path, k, klen);
        const wh_field *f = ot ? wh_type_field(ot, k, klen) : NULL;
        int rc = wh_json_utf8_valid(k, klen) ? 0 : conv_fail(err, path, "field name is not valid UTF-8");
        if (rc == 0) rc = conv(L, lua_gettop(L), f ? f->type : NULL, doc, &m->value, path, depth + 1, err);
        lua_pop(L, 1);
        path->len = base;
        path->data[base] = '\0';
        if (rc) {
            lua_pop(L, 1);
            return rc;
        }
    }
    return 0;
}

static int conv(lua_State *L, int idx, const wh_type *t, wh_json_doc *doc, wh_json *out, wh_buf *path,
                int depth, wh_err *err) {
    memset(out, 0, sizeof *out);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: out->type = WH_JSON_NULL; return 0;
    case LUA_TBOOLEAN: out->type = lua_toboolean(L, idx) ? WH_JSON_TRUE : WH_JSON_FALSE; return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            out->type = WH_JSON_INT;
            out->u.i = (int64_t)lua_tointeger(L, idx);
        } else {
            double d = (double)lua_tonumber(L, idx);
            if (!isfinite(d)) return conv_fail(err, path, "NaN and infinity cannot be sent as job arguments");
            out->type = WH_JSON_FLOAT;
            out->u.f.d = d;
        }
        return 0;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (!wh_json_utf8_valid(s, len)) return conv_fail(err, path, "string is not valid UTF-8");
        out->type = WH_JSON_STRING;
        out->u.str.s = wh_json_doc_try_strndup(doc, s, len);
        out->u.str.len = len;
        return out->u.str.s ? 0 : conv_nomem(err, path);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { out->type = WH_JSON_NULL; return 0; }
        return conv_fail(err, path, "cannot send a light userdata as a job argument");
    case LUA_TTABLE: return conv_table(L, idx, t, doc, out, path, depth, err);
    default: {
        wh_buf what = WH_BUF_INIT;
        wh_buf_printf(&what, "cannot send a %s as a job argument", luaL_typename(L, idx));
        int rc = conv_fail(err, path, wh_buf_cstr(&what));
        wh_buf_free(&what);
        return rc;
    }
    }
}

int wh_lconvert_to_json(lua_State *L, int idx, const wh_type *t, wh_json_doc *doc, wh_json *out,
                        wh_buf *path, wh_err *err) {
    return conv(L, lua_absindex(L, idx), t, doc, out, path, 0, err);
}

int wh_lconvert_call_args(lua_State *L, int idx, const wh_schema *s, wh_json_doc **out_doc, wh_err *err) {
    idx = lua_absindex(L, idx);
    *out_doc = NULL;
    wh_json_doc *doc = wh_json_doc_try_new();
    wh_json *root = doc ? wh_json_doc_try_alloc(doc, sizeof *root) : NULL;
    wh_buf path = WH_BUF_INIT;
    wh_buf_puts(&path, "args");
    int rc = 0;
    if (root == NULL) {
        rc = conv_nomem(err, &path);
    } else if (lua_isnoneornil(L, idx)) {
        memset(root, 0, sizeof *root);
        root->type = wh_schema_shape(s) == WH_ARGS_POSITIONAL ? WH_JSON_ARRAY : WH_JSON_OBJECT;
    } else if (!lua_istable(L, idx)) {
        rc = wh_err_set(err, WH_EARGS, "args: expected a table, got %s", luaL_typename(L, idx));
    } else {
        wh_type hint = {.kind = wh_schema_shape(s) == WH_ARGS_POSITIONAL ? WH_T_ARRAY : WH_T_OBJECT};
        const wh_type *t = wh_schema_shape(s) == WH_ARGS_NAMED ? wh_schema_root(s) : &hint;
        if (wh_schema_shape(s) == WH_ARGS_POSITIONAL) {
            /* positional: a sequence whose items follow the positional types */
            size_t n = 0;
            int shape = table_shape(L, idx, &n);
            if (shape != 1) {
                rc = conv_fail(err, &path, "expected a list of positional arguments");
            } else {
                root->type = WH_JSON_ARRAY;
                root->u.arr.n = n;
                root->u.arr.items = n ? wh_json_doc_try_alloc(doc, n * sizeof(wh_json)) : NULL;
                if (n && root->u.arr.items == NULL) rc = conv_nomem(err, &path);
                for (size_t i = 0; i < n && rc == 0; i++) {
                    lua_rawgeti(L, idx, (lua_Integer)i + 1);
                    wh_buf_reset(&path);
                    wh_buf_printf(&path, "args[%zu]", i + 1);
                    rc = conv(L, lua_gettop(L), wh_schema_positional(s, i), doc, &root->u.arr.items[i],
                              &path, 1, err);
                    lua_pop(L, 1);
                }
            }
        } else {
            rc = conv(L, idx, t, doc, root, &path, 0, err);
        }
    }
    wh_buf_free(&path);
    if (rc) {
        wh_json_doc_free(doc);
        return rc;
    }
    wh_json_doc_set_root(doc, root);
    *out_doc = doc;
    return 0;
}
