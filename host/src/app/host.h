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
const wh_catalog *wh_host_catalog(const wh_host *h);

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
