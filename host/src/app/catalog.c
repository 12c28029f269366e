/* catalog.c -- see catalog.h. */
#include "app/catalog.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/connect.h"
#include "core/buf.h"
#include "core/dir.h"
#include "core/file.h"
#include "core/mem.h"

struct wh_catalog {
    atomic_int refs;
    wh_source *sources;
    size_t nsources;
    wh_source *modules; /* the app's Lua modules (workers.lua_path), by name */
    size_t nmodules, capmodules;
    wh_worker_def *defs;
    size_t ndefs;
};

static int read_file(const char *path, char **out, size_t *len, wh_err *err) {
    wh_buf b = WH_BUF_INIT;
    int e = wh_file_read(path, 0, &b);
    if (e) {
        wh_buf_free(&b);
        return wh_err_set(err, WH_EIO, "%s: cannot read: %s", path, strerror(e));
    }
    *len = b.len;
    *out = wh_buf_steal(&b);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The chunk name shows the path relative to the root when it is inside it,
 * so messages read "workers/x.lua:3: ..." */
static char *chunkname_for(const char *root, const char *path) {
    size_t rl = strlen(root);
    wh_buf b = WH_BUF_INIT;
    wh_buf_putc(&b, '@');
    if (strncmp(path, root, rl) == 0 && path[rl] == '/') wh_buf_puts(&b, path + rl + 1);
    else wh_buf_puts(&b, path);
    return wh_buf_steal(&b);
}

static int read_sources(const wh_config *cfg, wh_catalog *c, wh_err *err) {
    char **names;
    size_t n;
    if (wh_dir_list_lua(cfg->scripts_dir, &names, &n, err) != 0) {
        if (err) err->code = WH_ESCRIPT;
        wh_err_prefix(err, "cannot open the scripts folder (workers.scripts)");
        return WH_ESCRIPT;
    }
    c->sources = wh_xcalloc(n ? n : 1, sizeof *c->sources);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        wh_source *s = &c->sources[c->nsources];
        wh_buf p = WH_BUF_INIT;
        wh_buf_printf(&p, "%s/%s", cfg->scripts_dir, names[i]);
        s->path = wh_buf_steal(&p);
        rc = read_file(s->path, &s->code, &s->len, err);
        if (rc == 0) {
            s->chunkname = chunkname_for(cfg->root, s->path);
            c->nsources++;
        } else {
            wh_free(s->path);
        }
    }
    wh_dir_free_list(names, n);
    return rc;
}

/* ---- app modules: every NAME.lua under each workers.lua_path folder ---- */

enum { MODULE_DEPTH = 8, MODULE_FILES = 10000 };

static void add_module(wh_catalog *c, const wh_config *cfg, const char *path, const char *name, const char *code,
                       size_t len) {
    if (c->nmodules == c->capmodules) {
        c->capmodules = c->capmodules ? c->capmodules * 2 : 16;
        c->modules = wh_xrealloc(c->modules, c->capmodules * sizeof *c->modules);
    }
    wh_source *m = &c->modules[c->nmodules++];
    m->path = wh_xstrdup(path);
    m->chunkname = chunkname_for(cfg->root, path);
    m->code = wh_xmalloc(len + 1);
    memcpy(m->code, code, len);
    m->code[len] = '\0';
    m->len = len;
    m->module = wh_xstrdup(name);
}

/* Walks dir (the module name prefix is `prefix`, "" at the top): a.lua is
 * module "a", sub/b.lua is "sub.b", sub/init.lua is "sub.init" and, as
 * package.path's ?/init.lua, also "sub" (added in a second pass so that a
 * sub.lua beside it wins, as on package.path). Sorted, so loading is
 * deterministic. Dot files and folders are skipped. */
static int walk_modules(wh_catalog *c, const wh_config *cfg, const char *dir, const char *prefix, int depth,
                        bool inits, wh_err *err) {
    DIR *d = opendir(dir);
    if (d == NULL) return 0; /* a missing module folder is no error (lib/ is optional) */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = wh_xrealloc(names, cap * sizeof *names);
        }
        names[n++] = wh_xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        wh_buf p = WH_BUF_INIT;
        wh_buf_printf(&p, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(wh_buf_cstr(&p), &st) != 0) {
            wh_buf_free(&p);
            continue;
        }
        size_t nl = strlen(names[i]);
        wh_buf mod = WH_BUF_INIT;
        if (S_ISDIR(st.st_mode)) {
            if (depth < MODULE_DEPTH) {
                wh_buf_printf(&mod, "%s%s.", prefix, names[i]);
                rc = walk_modules(c, cfg, wh_buf_cstr(&p), wh_buf_cstr(&mod), depth + 1, inits, err);
            }
        } else if (S_ISREG(st.st_mode) && nl > 4 && strcmp(names[i] + nl - 4, ".lua") == 0) {
            bool is_init = strcmp(names[i], "init.lua") == 0;
            if (inits && is_init && prefix[0]) {
                wh_buf_printf(&mod, "%.*s", (int)strlen(prefix) - 1, prefix); /* "sub." -> "sub" */
            } else if (!inits) {
                wh_buf_printf(&mod, "%s%.*s", prefix, (int)nl - 4, names[i]);
            }
            if (mod.len) {
                char *code;
                size_t len;
                if (c->nmodules >= MODULE_FILES) {
                    rc = wh_err_set(err, WH_ESCRIPT, "%s: more than %d Lua files under workers.lua_path",
                                    wh_buf_cstr(&p), MODULE_FILES);
                } else if ((rc = read_file(wh_buf_cstr(&p), &code, &len, err)) == 0) {
                    add_module(c, cfg, wh_buf_cstr(&p), wh_buf_cstr(&mod), code, len);
                    wh_free(code);
                }
            }
        }
        wh_buf_free(&mod);
        wh_buf_free(&p);
    }
    for (size_t i = 0; i < n; i++) wh_free(names[i]);
    wh_free(names);
    return rc;
}

static int read_modules(const wh_config *cfg, wh_catalog *c, wh_err *err) {
    c->modules = wh_xcalloc(1, sizeof *c->modules); /* never NULL: VMs read no app module from disk */
    c->capmodules = 1;
    for (char **d = cfg->lua_path; d && *d; d++) {
        int rc = walk_modules(c, cfg, *d, "", 0, false, err);
        if (rc == 0) rc = walk_modules(c, cfg, *d, "", 0, true, err);
        if (rc) return rc;
    }
    return 0;
}

static void free_sources(wh_source *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        wh_free(s[i].path);
        wh_free(s[i].chunkname);
        wh_free(s[i].code);
        wh_free(s[i].module);
    }
    wh_free(s);
}

static void free_catalog(wh_catalog *c) {
    free_sources(c->sources, c->nsources);
    free_sources(c->modules, c->nmodules);
    for (size_t i = 0; i < c->ndefs; i++) {
        wh_free(c->defs[i].name);
        wh_free(c->defs[i].queue);
        wh_free(c->defs[i].file);
        wh_schema_release(c->defs[i].schema);
    }
    wh_free(c->defs);
    wh_free(c);
}

static wh_vm *new_vm(const wh_catalog *c, const wh_config *cfg, const wh_lhost *host, bool check, wh_err *err) {
    static const luaL_Reg preload[] = {{"workerhost.connect", wh_connect_open}, {NULL, NULL}};
    wh_vm_options o = {cfg->memory_limit, (const char *const *)cfg->lua_path, host, c->modules, c->nmodules, check,
                       preload};
    return wh_vm_new(&o, c->sources, c->nsources, err);
}

wh_vm *wh_catalog_new_vm(const wh_catalog *c, const wh_config *cfg, const wh_lhost *host, wh_err *err) {
    return new_vm(c, cfg, host, false, err);
}

int wh_catalog_load(const wh_config *cfg, wh_catalog **out, wh_err *err) {
    wh_catalog *c = wh_xcalloc(1, sizeof *c);
    atomic_init(&c->refs, 1);
    int rc = read_sources(cfg, c, err);
    if (rc == 0) rc = read_modules(cfg, c, err);
    if (rc) {
        free_catalog(c);
        return rc;
    }
    wh_err e = WH_ERR_INIT; /* its code is returned even when err is NULL */
    wh_vm *vm = new_vm(c, cfg, NULL, true, &e); /* the scratch VM: every module compiles too */
    if (vm == NULL) {
        free_catalog(c);
        if (err) *err = e;
        return e.code;
    }
    c->ndefs = wh_vm_nworkers(vm);
    c->defs = wh_xcalloc(c->ndefs ? c->ndefs : 1, sizeof *c->defs);
    for (size_t i = 0; i < c->ndefs; i++) {
        wh_lworker_info info;
        wh_vm_worker(vm, i, &info);
        wh_worker_def *d = &c->defs[i];
        d->name = wh_xstrdup(info.name);
        d->queue = wh_xstrdup(info.queue);
        d->retry = info.retry;
        d->timeout = info.timeout > 0 ? info.timeout : cfg->timeout;
        d->schema = wh_schema_retain(info.schema);
        d->file = wh_xstrdup(info.file ? info.file : "?");
    }
    wh_vm_free(vm);
    *out = c;
    return 0;
}

wh_catalog *wh_catalog_retain(wh_catalog *c) {
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void wh_catalog_release(wh_catalog *c) {
    if (c == NULL) return;
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) free_catalog(c);
}

size_t wh_catalog_count(const wh_catalog *c) { return c->ndefs; }
const wh_worker_def *wh_catalog_at(const wh_catalog *c, size_t i) { return i < c->ndefs ? &c->defs[i] : NULL; }

const wh_worker_def *wh_catalog_find(const wh_catalog *c, const char *name) {
    size_t lo = 0, hi = c->ndefs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(name, c->defs[mid].name);
        if (r == 0) return &c->defs[mid];
        if (r < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const wh_source *wh_catalog_sources(const wh_catalog *c, size_t *n) {
    *n = c->nsources;
    return c->sources;
}

const wh_source *wh_catalog_modules(const wh_catalog *c, size_t *n) {
    *n = c->nmodules;
    return c->modules;
}

int wh_catalog_unknown_class(const wh_catalog *cat, const char *name, wh_err *err) {
    wh_buf known = WH_BUF_INIT;
    for (size_t i = 0; i < wh_catalog_count(cat); i++)
        wh_buf_printf(&known, "%s%s", i ? ", " : "", wh_catalog_at(cat, i)->name);
    int rc = wh_err_set(err, WH_ENOCLASS, "unknown worker class \"%s\" (known: %s)", name,
                        known.len ? wh_buf_cstr(&known) : "none");
    wh_buf_free(&known);
    return rc;
}
