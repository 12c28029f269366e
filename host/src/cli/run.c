/* run.c -- workerhost run: the host until SIGINT/SIGTERM. */
#include <stdio.h>

#include "app/host.h"
#include "cli/cli.h"

int wh_cli_run_host(wh_host *h) {
    const wh_config *cfg = wh_host_config(h);
    if (cfg->mode == WH_MODE_FOREGROUND_BLOCKING) {
        fprintf(stderr, "workerhost run: workers.mode is ForegroundBlocking in %s: there is nothing to run, "
                        "jobs run when they are enqueued (use BackgroundAsync or BackgroundQueue)\n",
                cfg->file);
        return 2;
    }
    wh_err err = WH_ERR_INIT;
    int rc = wh_host_start(h, &err);
    if (rc) {
        fprintf(stderr, "workerhost run: %s\n", err.msg);
        return wh_cli_exit_status(rc);
    }
    return 0;
}
