/* cli.h -- shared pieces of the workerhost command's subcommands: the
 * helpers of cli.c, and the entry point of each subcommand (in its own
 * file). */
#ifndef WH_CLI_H
#define WH_CLI_H

#include <stdbool.h>

#include "config/config.h"
#include "workerhost.h"

typedef struct wh_cli {
    const char *root, *env, *config, *log_format, *log_level; /* borrowed from argv */
    bool help;
    const char **words; /* the command and its own arguments and options */
    int nwords;
} wh_cli;

/* The command's exit statuses (main.c's usage text lists them). */
enum { EXIT_JOB = 1, EXIT_USAGE = 2, EXIT_ARGS = 3, EXIT_CLASS = 4, EXIT_UNAVAIL = 5 };

/* Exit status for a WH_E* code. */
int wh_cli_exit_status(int rc);
/* Prints "workerhost CMD: <message>" (cmd may be NULL: "workerhost: ...";
 * the message is printf's fmt, ...) and a hint; returns 2. */
int wh_cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Creates the host from the global options (mode forced if not NULL);
 * prints the error and returns 2 on failure. On success it has called
 * wh_cli_config_loaded. */
int wh_cli_open_host(const wh_cli *cli, const wh_mode *mode, wh_host **out);
/* What the command does with every configuration it loads, before any
 * thread starts (setenv/unsetenv are not thread-safe): unsets the
 * environment variables that went into queue.uri (cfg->secret_env), and
 * makes the process non-dumpable (no core, no ptrace by the same user,
 * /proc/PID/mem and environ closed to other processes) unless
 * workers.allow_core_dumps is true. The library (wh_host_new) does neither:
 * it changes no process-wide state behind its embedder's back. */
void wh_cli_config_loaded(const wh_config *cfg);

int wh_cli_enqueue(const wh_cli *cli);
int wh_cli_generate(const wh_cli *cli);
/* Blocks the signals the host takes with sigwait, in the calling thread
 * (threads started later inherit the mask). */
void wh_cli_block_signals(void);
/* Runs a host until SIGINT/SIGTERM; returns the exit status. SIGHUP (and,
 * with workers.reload, a change under the scripts folder or lua_path)
 * reloads the worker scripts. */
int wh_cli_run_host(wh_host *h);

/* The owned path "<root>/tmp/<name>". */
char *wh_cli_tmp_path(const char *root, const char *name);
/* Writes text to path through a temp file and a rename (readers never see
 * half a file). 0, or -1 with errno set. */
int wh_cli_write_atomic(const char *path, const char *text);

/* reload.c: the reload status file under <root>/tmp (the pid file: cli/pidfile.h). */
/* Records the outcome of reload attempt number `attempt` (rc and, on
 * failure, its message) in <root>/tmp/workerhost.reload. Callers serialize. */
void wh_cli_reload_status(const wh_config *cfg, unsigned attempt, wh_host *h, int rc, const char *message);
/* True when <root>/tmp/workerhost.pid names a running workerhost; fills its
 * pid, generation and last reload (epoch seconds, 0 = none) from the
 * status file. */
bool wh_cli_local_host(const char *root, long *pid, unsigned *generation, double *reloaded_at);
/* workerhost reload [--no-wait | --status] */
int wh_cli_reload(const wh_cli *cli);

#endif
