/* runner.c -- see runner.h. */
#include "app/runner.h"

#include "core/clock.h"
#include "core/log.h"

const char *wh_runner_outcome_name(int rc) {
    switch (rc) {
    case 0: return "done";
    case WH_EARGS: return "refused";
    case WH_ENOCLASS: return "unknown class";
    case WH_ETIMEOUT: return "timed out";
    case WH_ENOMEM: return "out of memory";
    default: return "failed";
    }
}

void wh_runner_perform(wh_vm *vm, const wh_job *job, double timeout, wh_run_result *res) {
    wh_job_meta meta;
    wh_job_meta_of(job, &meta);
    double t0 = wh_clock_monotonic();
    wh_log(WH_LOG_DEBUG, job->class_name, job->jid, "start");
    wh_vm_perform(vm, &meta, job->args, timeout, res);
    double ms = (wh_clock_monotonic() - t0) * 1000.0;
    if (res->rc == 0) {
        wh_log(WH_LOG_INFO, job->class_name, job->jid, "done in %.3f ms", ms);
    } else {
        wh_log(WH_LOG_WARN, job->class_name, job->jid, "%s in %.3f ms: %s", wh_runner_outcome_name(res->rc), ms,
               res->err.msg);
        if (res->traceback) wh_log(WH_LOG_DEBUG, job->class_name, job->jid, "%s", res->traceback);
    }
}
