/* pool.c -- see pool.h. */
#include "redis/pool.h"

#include <pthread.h>

#include "core/mem.h"
#include "redis/client.h"
#include "redis/uri.h"

struct wh_redis_pool {
    wh_redis_uri uri;
    char *ns;
    double timeout_s;
    pthread_mutex_t lock;
    wh_redis_client **idle; /* max_idle slots */
    size_t nidle, max_idle;
};

int wh_redis_pool_new(const char *uri, const char *ns, double timeout_s, size_t max_idle, wh_redis_pool **out,
                      wh_err *err) {
    wh_redis_pool *p = wh_xcalloc(1, sizeof *p);
    if (wh_redis_uri_parse(uri ? uri : "", &p->uri, err) != 0) {
        wh_free(p);
        return WH_ECONFIG;
    }
    p->ns = ns && *ns ? wh_xstrdup(ns) : NULL;
    p->timeout_s = timeout_s;
    p->max_idle = max_idle ? max_idle : 1;
    p->idle = wh_xcalloc(p->max_idle, sizeof *p->idle);
    pthread_mutex_init(&p->lock, NULL);
    *out = p;
    return 0;
}

void wh_redis_pool_free(wh_redis_pool *p) {
    if (p == NULL) return;
    for (size_t i = 0; i < p->nidle; i++) wh_redis_client_free(p->idle[i]);
    wh_free(p->idle);
    wh_free(p->ns);
    wh_redis_uri_free(&p->uri);
    pthread_mutex_destroy(&p->lock);
    wh_free(p);
}

int wh_redis_pool_push(wh_redis_pool *p, const wh_redis_item *items, size_t n, wh_err *err) {
    wh_redis_client *c = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->nidle) c = p->idle[--p->nidle];
    pthread_mutex_unlock(&p->lock);
    int rc = 0;
    if (c == NULL) rc = wh_redis_client_connect(&p->uri, p->ns, p->timeout_s, &c, err);
    if (rc == 0) rc = n == 1 ? wh_redis_client_push(c, &items[0], err) : wh_redis_client_push_bulk(c, items, n, err);
    if (c == NULL) return rc;
    if (rc == WH_EUNAVAIL) { /* the connection is suspect: do not reuse it */
        wh_redis_client_free(c);
        return rc;
    }
    pthread_mutex_lock(&p->lock);
    if (p->nidle < p->max_idle) {
        p->idle[p->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    wh_redis_client_free(c);
    return rc;
}
