/* lschema.c -- see lschema.h. */
#include "lua/lschema.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "lua/lconvert.h"

const char wh_lschema_type_mt_key = 0;

typedef struct compiler {
    lua_State *L;
    wh_schema *s;
    wh_buf path;
    wh_err *err;
} compiler;

static int cfail(compiler *c, const char *fmt, const char *arg) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_printf(&b, "%s: ", wh_buf_cstr(&c->path));
    wh_buf_printf(&b, fmt, arg);
    wh_err_set(c->err, WH_ESCRIPT, "%s", wh_buf_cstr(&b));
    wh_buf_free(&b);
    return WH_ESCRIPT;
}

static const struct { const char *name; wh_type_kind kind; } base_types[] = {
    {"string", WH_T_STRING}, {"integer", WH_T_INTEGER}, {"number", WH_T_NUMBER},
    {"boolean", WH_T_BOOLEAN}, {"any", WH_T_ANY},
};
#define KNOWN_TYPES "string, integer, number, boolean, any"

static int compile_type(compiler *c, int idx, wh_type **out);

static int compile_shorthand(compiler *c, int idx, wh_type **out) {
    size_t len;
    const char *s = lua_tolstring(c->L, idx, &len);
    bool optional = len > 0 && s[len - 1] == '?';
    size_t n = optional ? len - 1 : len;
    for (size_t i = 0; i < sizeof base_types / sizeof *base_types; i++) {
        if (strlen(base_types[i].name) == n && memcmp(base_types[i].name, s, n) == 0) {
            *out = wh_schema_new_type(c->s, base_types[i].kind);
            (*out)->optional = optional;
            return 0;
        }
    }
    return cfail(c, "unknown type \"%s\" (known: " KNOWN_TYPES ", each with an optional trailing ?, "
                    "and the constructors in wh.types)", s);
}

/* Reads an optional non-negative integer option; returns 1 if present, 0 if
 * absent, negative on error. */
static int opt_size(compiler *c, int idx, const char *name, size_t *out) {
    lua_getfield(c->L, idx, name);
    if (lua_isnil(c->L, -1)) { lua_pop(c->L, 1); return 0; }
    if (!lua_isinteger(c->L, -1) || lua_tointeger(c->L, -1) < 0) {
        lua_pop(c->L, 1);
        return cfail(c, "option %s must be an integer >= 0", name);
    }
    *out = (size_t)lua_tointeger(c->L, -1);
    lua_pop(c->L, 1);
    return 1;
}

static int opt_number(compiler *c, int idx, const char *name, wh_type *t, bool is_int, bool is_max) {
    lua_State *L = c->L;
    lua_getfield(L, idx, name);
    int rc = 0;
    if (!lua_isnil(L, -1)) {
        if (is_int && !lua_isinteger(L, -1)) rc = cfail(c, "option %s must be an integer", name);
        else if (!lua_isnumber(L, -1) || lua_type(L, -1) != LUA_TNUMBER) rc = cfail(c, "option %s must be a number", name);
        else if (is_int) {
            if (is_max) { t->has_max = true; t->imax = (int64_t)lua_tointeger(L, -1); }
            else { t->has_min = true; t->imin = (int64_t)lua_tointeger(L, -1); }
        } else {
            double d = (double)lua_tonumber(L, -1);
            if (isnan(d)) rc = cfail(c, "option %s must not be NaN", name);
            else if (is_max) { t->has_max = true; t->max = d; }
            else { t->has_min = true; t->min = d; }
        }
    }
    lua_pop(L, 1);
    return rc;
}

/* Options each kind accepts, checked so a typo ("maxlen") is an error. */
static const char *const common_opts[] = {"kind", "is_optional", "default_value", "has_default", NULL};
static const char *const kind_opts[][6] = {
    [WH_T_ANY] = {NULL},
    [WH_T_STRING] = {"min_len", "max_len", NULL},
    [WH_T_INTEGER] = {"min", "max", NULL},
    [WH_T_NUMBER] = {"min", "max", NULL},
    [WH_T_BOOLEAN] = {NULL},
    [WH_T_ARRAY] = {"of", "min_items", "max_items", NULL},
    [WH_T_OBJECT] = {"fields", "allow_unknown", NULL},
    [WH_T_ENUM] = {"values", NULL},
};

static bool in_list(const char *const *list, const char *k) {
    for (; *list; list++)
        if (strcmp(*list, k) == 0) return true;
    return false;
}

static int check_opts(compiler *c, int idx, wh_type_kind kind) {
    lua_State *L = c->L;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (k == NULL || !(in_list(common_opts, k) || in_list(kind_opts[kind], k))) {
            char name[64];
            snprintf(name, sizeof name, "%s", k ? k : "(not a string)");
            lua_pop(L, 1);
            wh_buf b = WH_BUF_INIT;
            wh_buf_printf(&b, "unknown option \"%s\" for %s (known: ", name, wh_type_kind_name(kind));
            for (const char *const *o = kind_opts[kind]; *o; o++)
                wh_buf_printf(&b, "%s, ", *o);
            wh_buf_puts(&b, "optional, default)");
            int rc = cfail(c, "%s", wh_buf_cstr(&b));
            wh_buf_free(&b);
            return rc;
        }
    }
    return 0;
}

static int compile_fields(compiler *c, int idx, wh_type *t);

static int compile_table_type(compiler *c, int idx, wh_type **out) {
    lua_State *L = c->L;
    lua_getfield(L, idx, "kind");
    const char *kname = lua_tostring(L, -1);
    wh_type_kind kind = WH_T_ANY;
    bool found = false;
    static const char *const names[] = {"any", "string", "integer", "number", "boolean", "array", "object", "enum"};
    static const wh_type_kind kinds[] = {WH_T_ANY, WH_T_STRING, WH_T_INTEGER, WH_T_NUMBER,
                                         WH_T_BOOLEAN, WH_T_ARRAY, WH_T_OBJECT, WH_T_ENUM};
    for (size_t i = 0; kname && i < sizeof names / sizeof *names; i++)
        if (strcmp(names[i], kname) == 0) { kind = kinds[i]; found = true; }
    lua_pop(L, 1);
    if (!found) return cfail(c, "a type table without a known kind%s", "");
    int rc = check_opts(c, idx, kind);
    if (rc) return rc;

    wh_type *t = wh_schema_new_type(c->s, kind);
    lua_getfield(L, idx, "is_optional");
    t->optional = lua_toboolean(L, -1);
    lua_pop(L, 1);

    size_t z;
    if (kind == WH_T_INTEGER || kind == WH_T_NUMBER) {
        if ((rc = opt_number(c, idx, "min", t, kind == WH_T_INTEGER, false))) return rc;
        if ((rc = opt_number(c, idx, "max", t, kind == WH_T_INTEGER, true))) return rc;
        if (t->has_min && t->has_max && (kind == WH_T_INTEGER ? t->imin > t->imax : t->min > t->max))
            return cfail(c, "min is greater than max%s", "");
    }
    if (kind == WH_T_STRING) {
        if ((rc = opt_size(c, idx, "min_len", &z)) < 0) return rc;
        if (rc) { t->has_min_len = true; t->min_len = z; }
        if ((rc = opt_size(c, idx, "max_len", &z)) < 0) return rc;
        if (rc) { t->has_max_len = true; t->max_len = z; }
        if (t->has_min_len && t->has_max_len && t->min_len > t->max_len)
            return cfail(c, "min_len is greater than max_len%s", "");
    }
    if (kind == WH_T_ARRAY) {
        if ((rc = opt_size(c, idx, "min_items", &z)) < 0) return rc;
        if (rc) { t->has_min_items = true; t->min_items = z; }
        if ((rc = opt_size(c, idx, "max_items", &z)) < 0) return rc;
        if (rc) { t->has_max_items = true; t->max_items = z; }
        if (t->has_min_items && t->has_max_items && t->min_items > t->max_items)
            return cfail(c, "min_items is greater than max_items%s", "");
        lua_getfield(L, idx, "of");
        size_t base = c->path.len;
        wh_buf_puts(&c->path, "[]");
        rc = lua_isnil(L, -1) ? cfail(c, "an array needs an item type%s", "")
                              : compile_type(c, lua_gettop(L), &t->items);
        c->path.len = base;
        c->path.data[base] = '\0';
        lua_pop(L, 1);
        if (rc) return rc;
    }
    if (kind == WH_T_OBJECT) {
        lua_getfield(L, idx, "allow_unknown");
        t->allow_unknown = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, idx, "fields");
        rc = lua_istable(L, -1) ? compile_fields(c, lua_gettop(L), t)
                                : cfail(c, "an object needs a table of fields%s", "");
        lua_pop(L, 1);
        if (rc) return rc;
    }
    if (kind == WH_T_ENUM) {
        lua_getfield(L, idx, "values");
        size_t n = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
        if (n == 0) { lua_pop(L, 1); return cfail(c, "an enum needs a non-empty list of values%s", ""); }
        wh_json *vals = wh_json_doc_alloc(wh_schema_doc(c->s), n * sizeof *vals);
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            bool ok = lua_type(L, -1) == LUA_TSTRING || lua_isinteger(L, -1);
            if (ok) rc = wh_lconvert_to_json(L, -1, NULL, wh_schema_doc(c->s), &vals[i], &c->path, c->err);
            lua_pop(L, 1);
            if (!ok) { lua_pop(L, 1); return cfail(c, "enum values must be strings or integers%s", ""); }
            if (rc) { lua_pop(L, 1); c->err->code = WH_ESCRIPT; return WH_ESCRIPT; }
        }
        lua_pop(L, 1);
        t->values = vals;
        t->nvalues = n;
    }
    /* default: converted with the type as hint, then checked against it */
    lua_getfield(L, idx, "has_default");
    bool has_default = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (has_default) {
        lua_getfield(L, idx, "default_value");
        wh_json *dv = wh_json_doc_alloc(wh_schema_doc(c->s), sizeof *dv);
        rc = wh_lconvert_to_json(L, -1, t, wh_schema_doc(c->s), dv, &c->path, c->err);
        lua_pop(L, 1);
        if (rc == 0 && dv->type == WH_JSON_NULL) rc = cfail(c, "a default of nil means no default; use optional%s", "");
        if (rc == 0) {
            wh_buf p = WH_BUF_INIT;
            wh_buf_printf(&p, "%s (default)", wh_buf_cstr(&c->path));
            rc = wh_type_check(t, dv, &p, c->err);
            wh_buf_free(&p);
        }
        if (rc) { c->err->code = WH_ESCRIPT; return WH_ESCRIPT; }
        t->default_value = dv;
        t->optional = true;
    }
    *out = t;
    return 0;
}

static int compile_type(compiler *c, int idx, wh_type **out) {
    lua_State *L = c->L;
    luaL_checkstack(L, 8, "compiling a schema");
    if (c->path.len > 2000) return cfail(c, "types nested too deeply%s", "");
    if (lua_type(L, idx) == LUA_TSTRING) return compile_shorthand(c, idx, out);
    if (lua_type(L, idx) == LUA_TTABLE && lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &wh_lschema_type_mt_key);
        bool is_type = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (is_type) return compile_table_type(c, idx, out);
    }
    if (lua_type(L, idx) == LUA_TTABLE)
        return cfail(c, "a plain table is not a type; use wh.types.object{...} for a nested object "
                        "or wh.types.array(T) for a list%s", "");
    return cfail(c, "expected a type (a string such as \"string\" or a wh.types constructor), got %s",
                 luaL_typename(L, idx));
}

static int compile_fields(compiler *c, int idx, wh_type *t) {
    lua_State *L = c->L;
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            return cfail(c, "field names must be strings (a table mixing named and positional "
                            "arguments is not allowed)%s", "");
        }
        n++;
    }
    t->fields = n ? wh_schema_alloc(c->s, n * sizeof *t->fields) : NULL;
    t->nfields = 0;
    size_t base = c->path.len;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        wh_buf_putc(&c->path, '.');
        wh_buf_append(&c->path, k, klen);
        wh_field *f = &t->fields[t->nfields++];
        f->name = wh_schema_strndup(c->s, k, klen);
        f->name_len = klen;
        int rc = compile_type(c, lua_gettop(L), &f->type);
        c->path.len = base;
        c->path.data[base] = '\0';
        lua_pop(L, 1);
        if (rc) { lua_pop(L, 1); return rc; }
    }
    return 0;
}

wh_schema *wh_lschema_compile(lua_State *L, int idx, bool allow_unknown, wh_err *err) {
    idx = lua_absindex(L, idx);
    wh_err local;
    compiler c = {L, wh_schema_new(), WH_BUF_INIT, err ? err : &local};
    wh_buf_puts(&c.path, "args");
    int rc = 0;
    if (lua_isnil(L, idx)) {
        wh_schema_finish(c.s, WH_ARGS_NONE, NULL, NULL, 0);
    } else if (!lua_istable(L, idx)) {
        rc = cfail(&c, "expected a table of argument types, got %s", luaL_typename(L, idx));
    } else {
        /* classify: empty, all string keys (named), or 1..n (positional) */
        size_t count = 0, strings = 0;
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            lua_pop(L, 1);
            count++;
            if (lua_type(L, -1) == LUA_TSTRING) strings++;
        }
        size_t seq = lua_rawlen(L, idx);
        if (count == 0) {
            wh_schema_finish(c.s, WH_ARGS_NONE, NULL, NULL, 0);
        } else if (strings == count) {
            wh_type *root = wh_schema_new_type(c.s, WH_T_OBJECT);
            root->allow_unknown = allow_unknown;
            rc = compile_fields(&c, idx, root);
            if (rc == 0) wh_schema_finish(c.s, WH_ARGS_NAMED, root, NULL, 0);
        } else if (strings == 0 && seq == count) {
            wh_type **pos = wh_xcalloc(count, sizeof *pos);
            bool seen_optional = false;
            for (size_t i = 0; i < count && rc == 0; i++) {
                lua_rawgeti(L, idx, (lua_Integer)i + 1);
                wh_buf_reset(&c.path);
                wh_buf_printf(&c.path, "args[%zu]", i + 1);
                rc = compile_type(&c, lua_gettop(L), &pos[i]);
                lua_pop(L, 1);
                if (rc == 0 && pos[i]->optional) seen_optional = true;
                else if (rc == 0 && seen_optional)
                    rc = cfail(&c, "a required positional argument cannot follow an optional one%s", "");
            }
            if (rc == 0) wh_schema_finish(c.s, WH_ARGS_POSITIONAL, NULL, pos, count);
            wh_free(pos);
        } else {
            rc = cfail(&c, "a table mixing named fields and positional types is not allowed; use "
                           "either {name = type, ...} or {type, type, ...}%s", "");
        }
    }
    wh_buf_free(&c.path);
    if (rc) {
        wh_schema_release(c.s);
        return NULL;
    }
    return c.s;
}
