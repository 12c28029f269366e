/* schema.h -- compiled argument schemas and the check that runs in C before
 * any Lua does.
 *
 * A worker's `args` declaration is compiled (lua/lschema.c) into a tree of
 * wh_type nodes owned by a wh_schema. The tree is immutable once built and is
 * reference-counted, so one schema may be shared by the catalog and by every
 * worker thread (retain/release are atomic).
 *
 * Paths in messages use Lua's view of the arguments: `args.user_guid`,
 * `args.tags[1]` (1-based, as a worker indexes them in Lua), `args[2]` for
 * positional arguments. */
#ifndef WH_SCHEMA_H
#define WH_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "json/json.h"

typedef enum wh_type_kind {
    WH_T_ANY,
    WH_T_STRING,
    WH_T_INTEGER,
    WH_T_NUMBER,
    WH_T_BOOLEAN,
    WH_T_ARRAY,
    WH_T_OBJECT,
    WH_T_ENUM,
} wh_type_kind;

typedef struct wh_type wh_type;

typedef struct wh_field {
    const char *name; /* NUL-terminated, in the schema's arena */
    size_t name_len;
    wh_type *type;
} wh_field;

struct wh_type {
    wh_type_kind kind;
    bool optional;             /* absent or null is allowed */
    const wh_json *default_value; /* used when absent or null; implies optional; NULL if none */

    /* integer: imin/imax; number: min/max */
    bool has_min, has_max;
    int64_t imin, imax;
    double min, max;

    /* string: length in code points */
    bool has_min_len, has_max_len;
    size_t min_len, max_len;

    /* array */
    wh_type *items;
    bool has_min_items, has_max_items;
    size_t min_items, max_items;

    /* object: fields sorted by name for lookup */
    wh_field *fields;
    size_t nfields;
    bool allow_unknown;

    /* enum: values are strings or integers */
    const wh_json *values;
    size_t nvalues;
};

typedef enum wh_args_shape {
    WH_ARGS_NONE,       /* no arguments: payload args [] or [{}] */
    WH_ARGS_NAMED,      /* payload args [ {...} ]; perform gets the object */
    WH_ARGS_POSITIONAL, /* payload args [a, b, ...]; perform gets a sequence */
} wh_args_shape;

typedef struct wh_schema wh_schema; /* opaque, refcounted */

/* ---- building (used by the compiler in lua/lschema.c) ---- */

/* A new schema with refcount 1. Owned: release with wh_schema_release. */
wh_schema *wh_schema_new(void);
/* Arena memory living as long as the schema; zeroed. Aborts on OOM. */
void *wh_schema_alloc(wh_schema *s, size_t n);
const char *wh_schema_strndup(wh_schema *s, const char *p, size_t n);
/* The document that holds default and enum values (borrowed from s). */
wh_json_doc *wh_schema_doc(wh_schema *s);
wh_type *wh_schema_new_type(wh_schema *s, wh_type_kind kind);
/* Sets the top level. For WH_ARGS_NAMED, root is an OBJECT type; for
 * WH_ARGS_POSITIONAL, positional[0..n) are the argument types (trailing ones
 * may be optional); for WH_ARGS_NONE both are unused. Sorts object fields and
 * computes the hash, so call it last. */
void wh_schema_finish(wh_schema *s, wh_args_shape shape, wh_type *root, wh_type **positional,
                      size_t npositional);

/* ---- using ---- */

wh_schema *wh_schema_retain(wh_schema *s);  /* returns s; thread-safe */
void wh_schema_release(wh_schema *s);       /* accepts NULL; frees at zero; thread-safe */

wh_args_shape wh_schema_shape(const wh_schema *s);
const wh_type *wh_schema_root(const wh_schema *s);         /* NAMED: the object type */
size_t wh_schema_npositional(const wh_schema *s);
const wh_type *wh_schema_positional(const wh_schema *s, size_t i);

/* 16 lowercase hex characters identifying the schema's meaning (FNV-1a over a
 * canonical description): equal schemas have equal hashes. Borrowed. */
const char *wh_schema_hash(const wh_schema *s);

/* Checks a job payload's `args` value (the JSON array a Sidekiq payload
 * carries). Returns 0, or WH_EARGS with a message such as
 *   args.user_guid: expected string, got integer
 * (callers prefix the worker's name). */
int wh_schema_check_payload_args(const wh_schema *s, const wh_json *args, wh_err *err);

/* Checks the arguments as a caller gives them (ARGS_JSON on the command line,
 * the C API, Lua's wh.enqueue): an object for NAMED (or NONE), an array for
 * POSITIONAL. Same errors. */
int wh_schema_check_call_args(const wh_schema *s, const wh_json *args, wh_err *err);

/* Checks one value against one type; `path` is the path so far (e.g. "args"). */
int wh_type_check(const wh_type *t, const wh_json *v, wh_buf *path, wh_err *err);

/* Field lookup in an OBJECT type (binary search); NULL if none. */
const wh_field *wh_type_field(const wh_type *t, const char *name, size_t len);

/* Appends a one-line human description of t ("string", "integer?",
 * "array(string, max_items=10)", "enum(\"a\", \"b\")", "object{a: string}"). */
void wh_type_describe(const wh_type *t, wh_buf *out);
/* Appends the whole argument schema ("{user_guid: string, count: integer?}"
 * or "(string, integer?)" or "none"). */
void wh_schema_describe(const wh_schema *s, wh_buf *out);

const char *wh_type_kind_name(wh_type_kind k);



/* Builds the payload `args` array (in doc) from call-shaped arguments that
 * passed wh_schema_check_call_args: [obj] for NAMED, the array itself for
 * POSITIONAL, [] for NONE. The result may share nodes with call_args. */
const wh_json *wh_schema_payload_args(const wh_schema *s, wh_json_doc *doc, const wh_json *call_args);
#endif
