/* runner.h -- the one execution path every mode uses: a job (from any
 * source) runs in a VM: the C check, then perform, then the outcome, logged
 * the same way. */
#ifndef WH_RUNNER_H
#define WH_RUNNER_H

#include "app/job.h"
#include "lua/vm.h"

/* Runs job in vm; `timeout` is workers.timeout (a worker's own timeout wins).
 * Fills *res (free res->traceback with wh_free) and logs the outcome. */
void wh_runner_perform(wh_vm *vm, const wh_job *job, double timeout, wh_run_result *res);

/* A short name for an outcome, used in logs and by the CLI: "done",
 * "failed", "refused", "unknown class", "timed out", "out of memory". */
const char *wh_runner_outcome_name(int rc);

#endif
