/* host.h -- internals of wh_host (the public API is in workerhost.h) that
 * the command line needs. */
#ifndef WH_HOST_H
#define WH_HOST_H

#include "app/async.h"
#include "app/catalog.h"
#include "config/config.h"
#include "workerhost.h"

/* Borrowed from the host; valid until wh_host_free. */
const wh_config *wh_host_config(const wh_host *h);
/* The current catalog, borrowed: valid until the next wh_host_reload or
 * wh_host_free, so only for the owner of a host nobody reloads (the CLI's
 * check, enqueue). Other threads use wh_host_current_catalog. */
const wh_catalog *wh_host_catalog(const wh_host *h);
/* The current catalog, retained (release with wh_catalog_release), and its
 * generation in *generation (may be NULL). Any thread. */
wh_catalog *wh_host_current_catalog(wh_host *h, unsigned *generation);

/* Reload (declared in workerhost.h, for every trigger: SIGHUP, `workerhost
 * reload`, the file watch, and a Redis-wide control message):
 *   int wh_host_reload(wh_host *h, wh_err *err);          any thread
 *   unsigned wh_host_generation(const wh_host *h);        any thread
 *   double wh_host_reloaded_at(const wh_host *h);         any thread
 * wh_host_reload blocks while the new scripts load in a scratch VM; the
 * Redis I/O thread should rather hand the request to another thread (or
 * accept a pause of the load's duration). The generation and reload time
 * are lock-free reads, safe from a heartbeat on any thread. */

/* Like wh_host_new, but the mode is forced (the CLI's enqueue and tests). */
int wh_host_new_mode(wh_host **out, const wh_host_options *opts, const wh_mode *mode, wh_err *err);

/* Called after every attempt of a BackgroundAsync job (see async.h). Set it
 * before wh_host_start. */
void wh_host_set_observer(wh_host *h, wh_async_observer fn, void *ud);

/* BackgroundAsync: quiet (no new jobs start; running ones finish). */
void wh_host_quiet(wh_host *h);

/* The BackgroundAsync engine, or NULL. Borrowed. */
wh_async *wh_host_async(wh_host *h);

#endif
