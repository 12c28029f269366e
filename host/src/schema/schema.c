/* schema.c -- see schema.h. */
#include "schema/schema.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

struct wh_schema {
    atomic_int refs;
    wh_json_doc *doc;  /* arena for types, names, defaults and enum values */
    wh_args_shape shape;
    wh_type *root;
    wh_type **positional;
    size_t npositional;
    size_t nrequired;  /* positional: how many leading arguments are required */
    char hash[17];
};

/* ==== building ============================================================ */

wh_schema *wh_schema_new(void) {
    wh_schema *s = wh_xcalloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    s->doc = wh_json_doc_new();
    return s;
}

void *wh_schema_alloc(wh_schema *s, size_t n) {
    void *p = wh_json_doc_alloc(s->doc, n);
    memset(p, 0, n);
    return p;
}

const char *wh_schema_strndup(wh_schema *s, const char *p, size_t n) {
    return wh_json_doc_strndup(s->doc, p, n);
}

wh_json_doc *wh_schema_doc(wh_schema *s) { return s->doc; }

wh_type *wh_schema_new_type(wh_schema *s, wh_type_kind kind) {
    wh_type *t = wh_schema_alloc(s, sizeof *t);
    t->kind = kind;
    return t;
}

static int field_cmp(const void *a, const void *b) {
    const wh_field *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c != 0) return c;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static void sort_fields(wh_type *t) {
    if (t == NULL) return;
    if (t->kind == WH_T_OBJECT && t->nfields > 1)
        qsort(t->fields, t->nfields, sizeof *t->fields, field_cmp);
    if (t->kind == WH_T_OBJECT)
        for (size_t i = 0; i < t->nfields; i++) sort_fields(t->fields[i].type);
    if (t->kind == WH_T_ARRAY) sort_fields(t->items);
}

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void wh_schema_finish(wh_schema *s, wh_args_shape shape, wh_type *root, wh_type **positional,
                      size_t npositional) {
    s->shape = shape;
    s->root = root;
    sort_fields(root);
    if (shape == WH_ARGS_POSITIONAL) {
        s->positional = wh_schema_alloc(s, sizeof *s->positional * (npositional ? npositional : 1));
        for (size_t i = 0; i < npositional; i++) {
            s->positional[i] = positional[i];
            sort_fields(positional[i]);
        }
        s->npositional = npositional;
        s->nrequired = npositional;
        while (s->nrequired > 0 && s->positional[s->nrequired - 1]->optional) s->nrequired--;
    }
    wh_buf b = WH_BUF_INIT;
    wh_schema_describe(s, &b);
    snprintf(s->hash, sizeof s->hash, "%016" PRIx64, fnv1a(b.data, b.len));
    wh_buf_free(&b);
}

/* ==== lifetime ============================================================ */

wh_schema *wh_schema_retain(wh_schema *s) {
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void wh_schema_release(wh_schema *s) {
    if (s == NULL) return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    wh_json_doc_free(s->doc);
    wh_free(s);
}

wh_args_shape wh_schema_shape(const wh_schema *s) { return s->shape; }
const wh_type *wh_schema_root(const wh_schema *s) { return s->root; }
size_t wh_schema_npositional(const wh_schema *s) { return s->npositional; }
const wh_type *wh_schema_positional(const wh_schema *s, size_t i) {
    return i < s->npositional ? s->positional[i] : NULL;
}
const char *wh_schema_hash(const wh_schema *s) { return s->hash; }

/* ==== checking ============================================================ */

const wh_field *wh_type_field(const wh_type *t, const char *name, size_t len) {
    size_t lo = 0, hi = t->nfields;
    wh_field key = {name, len, NULL};
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = field_cmp(&key, &t->fields[mid]);
        if (c == 0) return &t->fields[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

/* Appends a short, safe rendering of a scalar for messages (strings are cut
 * at 40 bytes so a huge argument never floods a log line). */
static void show_value(wh_buf *b, const wh_json *v) {
    switch (v->type) {
    case WH_JSON_STRING: {
        size_t n = v->u.str.len > 40 ? 40 : v->u.str.len;
        while (n > 0 && n < v->u.str.len && ((unsigned char)v->u.str.s[n] & 0xC0) == 0x80) n--;
        wh_json_write_string(b, v->u.str.s, n);
        if (n < v->u.str.len) wh_buf_printf(b, "... (%zu bytes)", v->u.str.len);
        break;
    }
    case WH_JSON_ARRAY: wh_buf_printf(b, "array of %zu", v->u.arr.n); break;
    case WH_JSON_OBJECT: wh_buf_printf(b, "object of %zu", v->u.obj.n); break;
    default: wh_json_write(b, v, NULL); break;
    }
}

static int fail(wh_err *err, const wh_buf *path, const char *fmt, const wh_json *v) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_printf(&b, "%s: ", wh_buf_cstr(path));
    wh_buf_puts(&b, fmt);
    if (v) show_value(&b, v);
    wh_err_set(err, WH_EARGS, "%s", wh_buf_cstr(&b));
    wh_buf_free(&b);
    return WH_EARGS;
}

static int type_mismatch(const wh_type *t, const wh_json *v, const wh_buf *path, wh_err *err) {
    wh_buf d = WH_BUF_INIT;
    wh_type_describe(t, &d);
    int rc;
    if (t->kind == WH_T_INTEGER && v->type == WH_JSON_FLOAT && v->u.f.int_literal) {
        rc = wh_err_set(err, WH_EARGS, "%s: expected %s, got an integer outside the 64-bit range",
                        wh_buf_cstr(path), wh_buf_cstr(&d));
    } else if (t->kind == WH_T_INTEGER && v->type == WH_JSON_FLOAT) {
        wh_buf msg = WH_BUF_INIT;
        wh_buf_printf(&msg, "expected %s, got number ", wh_buf_cstr(&d));
        rc = fail(err, path, wh_buf_cstr(&msg), v);
        wh_buf_free(&msg);
    } else {
        rc = wh_err_set(err, WH_EARGS, "%s: expected %s, got %s", wh_buf_cstr(path),
                        wh_buf_cstr(&d), wh_json_type_name(v));
    }
    wh_buf_free(&d);
    return rc;
}

static void path_push_field(wh_buf *path, const char *name, size_t len) {
    wh_buf_putc(path, '.');
    wh_buf_append(path, name, len);
}

static bool json_equal_scalar(const wh_json *a, const wh_json *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case WH_JSON_STRING:
        return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case WH_JSON_INT: return a->u.i == b->u.i;
    default: return false;
    }
}

static int check_object(const wh_type *t, const wh_json *v, wh_buf *path, wh_err *err) {
    size_t base = path->len;
    for (size_t i = 0; i < v->u.obj.n; i++) {
        const wh_json_member *m = &v->u.obj.members[i];
        path_push_field(path, m->key, m->key_len);
        const wh_field *f = wh_type_field(t, m->key, m->key_len);
        int rc = 0;
        if (f) {
            rc = wh_type_check(f->type, &m->value, path, err);
        } else if (!t->allow_unknown) {
            wh_buf known = WH_BUF_INIT;
            for (size_t k = 0; k < t->nfields; k++)
                wh_buf_printf(&known, "%s%s", k ? ", " : "", t->fields[k].name);
            rc = wh_err_set(err, WH_EARGS, "%s: unknown field (known: %s)", wh_buf_cstr(path),
                            t->nfields ? wh_buf_cstr(&known) : "none");
            wh_buf_free(&known);
        }
        path->len = base;
        path->data[base] = '\0';
        if (rc) return rc;
    }
    for (size_t k = 0; k < t->nfields; k++) {
        const wh_field *f = &t->fields[k];
        if (f->type->optional) continue;
        if (wh_json_get(v, f->name, f->name_len) != NULL) continue;
        path_push_field(path, f->name, f->name_len);
        wh_buf d = WH_BUF_INIT;
        wh_type_describe(f->type, &d);
        int rc = wh_err_set(err, WH_EARGS, "%s: missing (expected %s)", wh_buf_cstr(path),
                            wh_buf_cstr(&d));
        wh_buf_free(&d);
        path->len = base;
        path->data[base] = '\0';
        return rc;
    }
    return 0;
}

int wh_type_check(const wh_type *t, const wh_json *v, wh_buf *path, wh_err *err) {
    if (v->type == WH_JSON_NULL) {
        if (t->optional || t->kind == WH_T_ANY) return 0;
        return type_mismatch(t, v, path, err);
    }
    switch (t->kind) {
    case WH_T_ANY: return 0;
    case WH_T_BOOLEAN:
        if (v->type != WH_JSON_TRUE && v->type != WH_JSON_FALSE) return type_mismatch(t, v, path, err);
        return 0;
    case WH_T_STRING: {
        if (v->type != WH_JSON_STRING) return type_mismatch(t, v, path, err);
        if (!t->has_min_len && !t->has_max_len) return 0;
        size_t n = wh_json_utf8_len(v->u.str.s, v->u.str.len);
        if (t->has_min_len && n < t->min_len)
            return wh_err_set(err, WH_EARGS, "%s: expected at least %zu character%s, got %zu",
                              wh_buf_cstr(path), t->min_len, t->min_len == 1 ? "" : "s", n);
        if (t->has_max_len && n > t->max_len)
            return wh_err_set(err, WH_EARGS, "%s: expected at most %zu character%s, got %zu",
                              wh_buf_cstr(path), t->max_len, t->max_len == 1 ? "" : "s", n);
        return 0;
    }
    case WH_T_INTEGER:
        if (v->type != WH_JSON_INT) return type_mismatch(t, v, path, err);
        if (t->has_min && v->u.i < t->imin)
            return wh_err_set(err, WH_EARGS, "%s: expected an integer >= %" PRId64 ", got %" PRId64,
                              wh_buf_cstr(path), t->imin, v->u.i);
        if (t->has_max && v->u.i > t->imax)
            return wh_err_set(err, WH_EARGS, "%s: expected an integer <= %" PRId64 ", got %" PRId64,
                              wh_buf_cstr(path), t->imax, v->u.i);
        return 0;
    case WH_T_NUMBER: {
        double d;
        if (v->type == WH_JSON_INT) d = (double)v->u.i;
        else if (v->type == WH_JSON_FLOAT) d = v->u.f.d;
        else return type_mismatch(t, v, path, err);
        if (!isfinite(d)) return fail(err, path, "number out of range: ", v);
        if (t->has_min && d < t->min)
            return wh_err_set(err, WH_EARGS, "%s: expected a number >= %.17g, got %.17g",
                              wh_buf_cstr(path), t->min, d);
        if (t->has_max && d > t->max)
            return wh_err_set(err, WH_EARGS, "%s: expected a number <= %.17g, got %.17g",
                              wh_buf_cstr(path), t->max, d);
        return 0;
    }
    case WH_T_ENUM:
        for (size_t i = 0; i < t->nvalues; i++)
            if (json_equal_scalar(&t->values[i], v)) return 0;
        {
            wh_buf d = WH_BUF_INIT;
            wh_type_describe(t, &d);
            wh_buf_printf(&d, ", got ");
            show_value(&d, v);
            int rc = wh_err_set(err, WH_EARGS, "%s: expected %s", wh_buf_cstr(path), wh_buf_cstr(&d));
            wh_buf_free(&d);
            return rc;
        }
    case WH_T_ARRAY: {
        if (v->type != WH_JSON_ARRAY) return type_mismatch(t, v, path, err);
        size_t n = v->u.arr.n;
        if (t->has_min_items && n < t->min_items)
            return wh_err_set(err, WH_EARGS, "%s: expected at least %zu item%s, got %zu",
                              wh_buf_cstr(path), t->min_items, t->min_items == 1 ? "" : "s", n);
        if (t->has_max_items && n > t->max_items)
            return wh_err_set(err, WH_EARGS, "%s: expected at most %zu item%s, got %zu",
                              wh_buf_cstr(path), t->max_items, t->max_items == 1 ? "" : "s", n);
        size_t base = path->len;
        for (size_t i = 0; i < n; i++) {
            wh_buf_printf(path, "[%zu]", i + 1);
            int rc = wh_type_check(t->items, &v->u.arr.items[i], path, err);
            path->len = base;
            path->data[base] = '\0';
            if (rc) return rc;
        }
        return 0;
    }
    case WH_T_OBJECT:
        if (v->type != WH_JSON_OBJECT) return type_mismatch(t, v, path, err);
        return check_object(t, v, path, err);
    }
    return wh_err_set(err, WH_EARGS, "%s: unknown type", wh_buf_cstr(path));
}

static int check_positional(const wh_schema *s, const wh_json *arr, wh_err *err) {
    size_t n = arr->u.arr.n;
    if (n < s->nrequired || n > s->npositional) {
        if (s->nrequired == s->npositional)
            return wh_err_set(err, WH_EARGS, "args: expected %zu argument%s, got %zu", s->npositional,
                              s->npositional == 1 ? "" : "s", n);
        return wh_err_set(err, WH_EARGS, "args: expected %zu to %zu arguments, got %zu", s->nrequired,
                          s->npositional, n);
    }
    wh_buf path = WH_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        wh_buf_reset(&path);
        wh_buf_printf(&path, "args[%zu]", i + 1);
        rc = wh_type_check(s->positional[i], &arr->u.arr.items[i], &path, err);
    }
    wh_buf_free(&path);
    return rc;
}

static int check_named(const wh_schema *s, const wh_json *obj, wh_err *err) {
    wh_buf path = WH_BUF_INIT;
    wh_buf_puts(&path, "args");
    int rc = wh_type_check(s->root, obj, &path, err);
    wh_buf_free(&path);
    return rc;
}

static bool is_empty_container(const wh_json *v) {
    return (v->type == WH_JSON_OBJECT && v->u.obj.n == 0) || (v->type == WH_JSON_ARRAY && v->u.arr.n == 0);
}

int wh_schema_check_payload_args(const wh_schema *s, const wh_json *args, wh_err *err) {
    if (args == NULL) return wh_err_set(err, WH_EARGS, "args: missing from the job");
    if (args->type != WH_JSON_ARRAY)
        return wh_err_set(err, WH_EARGS, "args: expected an array in the job payload, got %s",
                          wh_json_type_name(args));
    size_t n = args->u.arr.n;
    switch (s->shape) {
    case WH_ARGS_NONE:
        if (n == 0 || (n == 1 && is_empty_container(&args->u.arr.items[0]))) return 0;
        return wh_err_set(err, WH_EARGS, "args: expected no arguments, got %zu", n);
    case WH_ARGS_NAMED:
        if (n == 0) {
            static const wh_json empty = {.type = WH_JSON_OBJECT};
            return check_named(s, &empty, err);
        }
        if (n != 1 || args->u.arr.items[0].type != WH_JSON_OBJECT) {
            if (n == 1)
                return wh_err_set(err, WH_EARGS,
                                  "args: expected one object of named arguments, got %s",
                                  wh_json_type_name(&args->u.arr.items[0]));
            return wh_err_set(err, WH_EARGS,
                              "args: expected one object of named arguments, got %zu values", n);
        }
        return check_named(s, &args->u.arr.items[0], err);
    case WH_ARGS_POSITIONAL: return check_positional(s, args, err);
    }
    return wh_err_set(err, WH_EARGS, "args: bad schema");
}

int wh_schema_check_call_args(const wh_schema *s, const wh_json *args, wh_err *err) {
    switch (s->shape) {
    case WH_ARGS_NONE:
        if (is_empty_container(args)) return 0;
        return wh_err_set(err, WH_EARGS, "args: expected no arguments ({} or []), got %s",
                          wh_json_type_name(args));
    case WH_ARGS_NAMED:
        if (args->type == WH_JSON_ARRAY && args->u.arr.n == 0) {
            static const wh_json empty = {.type = WH_JSON_OBJECT};
            return check_named(s, &empty, err);
        }
        if (args->type != WH_JSON_OBJECT)
            return wh_err_set(err, WH_EARGS, "args: expected an object of named arguments, got %s",
                              wh_json_type_name(args));
        return check_named(s, args, err);
    case WH_ARGS_POSITIONAL:
        if (args->type != WH_JSON_ARRAY)
            return wh_err_set(err, WH_EARGS, "args: expected an array of positional arguments, got %s",
                              wh_json_type_name(args));
        return check_positional(s, args, err);
    }
    return wh_err_set(err, WH_EARGS, "args: bad schema");
}

/* ==== describing ========================================================== */

const char *wh_type_kind_name(wh_type_kind k) {
    switch (k) {
    case WH_T_ANY: return "any";
    case WH_T_STRING: return "string";
    case WH_T_INTEGER: return "integer";
    case WH_T_NUMBER: return "number";
    case WH_T_BOOLEAN: return "boolean";
    case WH_T_ARRAY: return "array";
    case WH_T_OBJECT: return "object";
    case WH_T_ENUM: return "enum";
    }
    return "?";
}

/* Options in a fixed order, so describe() doubles as the canonical form the
 * hash is computed from. */
static void describe_opts(const wh_type *t, wh_buf *out, bool *any) {
#define OPT(...) do { wh_buf_puts(out, *any ? ", " : ""); wh_buf_printf(out, __VA_ARGS__); *any = true; } while (0)
    if (t->kind == WH_T_INTEGER) {
        if (t->has_min) OPT("min=%" PRId64, t->imin);
        if (t->has_max) OPT("max=%" PRId64, t->imax);
    } else if (t->kind == WH_T_NUMBER) {
        if (t->has_min) OPT("min=%.17g", t->min);
        if (t->has_max) OPT("max=%.17g", t->max);
    }
    if (t->has_min_len) OPT("min_len=%zu", t->min_len);
    if (t->has_max_len) OPT("max_len=%zu", t->max_len);
    if (t->has_min_items) OPT("min_items=%zu", t->min_items);
    if (t->has_max_items) OPT("max_items=%zu", t->max_items);
    if (t->kind == WH_T_OBJECT && t->allow_unknown) OPT("allow_unknown");
#undef OPT
}

/* A field name as is when it is an identifier, else as a JSON string: the
 * description is also the canonical form hashed into wh_schema, so a name
 * holding ": " or ", " must not read like two fields. */
static void describe_name(const char *name, wh_buf *out) {
    bool plain = *name != '\0';
    for (const char *p = name; *p && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_';
    if (plain) wh_buf_puts(out, name);
    else wh_json_write_string(out, name, strlen(name));
}

void wh_type_describe(const wh_type *t, wh_buf *out) {
    bool any = false;
    switch (t->kind) {
    case WH_T_ARRAY:
        wh_buf_puts(out, "array(");
        wh_type_describe(t->items, out);
        any = true;
        describe_opts(t, out, &any);
        wh_buf_putc(out, ')');
        break;
    case WH_T_ENUM:
        wh_buf_puts(out, "enum(");
        for (size_t i = 0; i < t->nvalues; i++) {
            if (i) wh_buf_puts(out, ", ");
            wh_json_write(out, &t->values[i], NULL);
        }
        wh_buf_putc(out, ')');
        break;
    case WH_T_OBJECT:
        wh_buf_puts(out, "{");
        for (size_t i = 0; i < t->nfields; i++) {
            wh_buf_puts(out, i ? ", " : "");
            describe_name(t->fields[i].name, out);
            wh_buf_puts(out, ": ");
            wh_type_describe(t->fields[i].type, out);
        }
        if (t->allow_unknown) wh_buf_puts(out, t->nfields ? ", ..." : "...");
        wh_buf_putc(out, '}');
        break;
    default: {
        wh_buf_puts(out, wh_type_kind_name(t->kind));
        size_t mark = out->len;
        wh_buf_putc(out, '(');
        describe_opts(t, out, &any);
        if (any) wh_buf_putc(out, ')');
        else { out->len = mark; out->data[mark] = '\0'; }
    }
    }
    if (t->default_value) {
        wh_buf_puts(out, " = ");
        wh_json_write(out, t->default_value, NULL);
    } else if (t->optional) {
        wh_buf_putc(out, '?');
    }
}

void wh_schema_describe(const wh_schema *s, wh_buf *out) {
    switch (s->shape) {
    case WH_ARGS_NONE: wh_buf_puts(out, "none"); break;
    case WH_ARGS_NAMED: wh_type_describe(s->root, out); break;
    case WH_ARGS_POSITIONAL:
        wh_buf_putc(out, '(');
        for (size_t i = 0; i < s->npositional; i++) {
            if (i) wh_buf_puts(out, ", ");
            wh_type_describe(s->positional[i], out);
        }
        wh_buf_putc(out, ')');
        break;
    }
}

const wh_json *wh_schema_payload_args(const wh_schema *s, wh_json_doc *doc, const wh_json *call_args) {
    wh_json *arr = wh_json_doc_alloc(doc, sizeof *arr);
    memset(arr, 0, sizeof *arr);
    arr->type = WH_JSON_ARRAY;
    switch (s->shape) {
    case WH_ARGS_NONE: break;
    case WH_ARGS_NAMED:
        if (call_args->type == WH_JSON_OBJECT) {
            arr->u.arr.n = 1;
            arr->u.arr.items = (wh_json *)call_args;
        }
        break;
    case WH_ARGS_POSITIONAL: return call_args;
    }
    return arr;
}
