/* log.h -- the host's log: one line per event on stderr, human-readable text
 * or JSON lines (logger.format). Thread-safe: each line is written with one
 * write(2) under a mutex, so lines from worker threads never interleave.
 * The level and format are process-wide settings, set once at start. */
#ifndef WH_LOG_H
#define WH_LOG_H

#include <stdarg.h>

/* logger.level and logger.format; config/config.h stores them. */
typedef enum wh_log_format { WH_LOG_TEXT = 0, WH_LOG_JSON } wh_log_format;
typedef enum wh_log_level { WH_LOG_DEBUG = 0, WH_LOG_INFO, WH_LOG_WARN, WH_LOG_ERROR } wh_log_level;

void wh_log_setup(wh_log_level level, wh_log_format format);
wh_log_level wh_log_get_level(void);
int wh_log_parse_level(const char *s, wh_log_level *out);   /* 0 or WH_EINVAL */
int wh_log_parse_format(const char *s, wh_log_format *out); /* 0 or WH_EINVAL */

/* Logs one line. `jid` and `worker` may be NULL; they are shown as context
 * ("[DownloadWorker jid=...]" in text, "jid"/"worker" fields in JSON). */
void wh_log(wh_log_level level, const char *worker, const char *jid, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
void wh_logv(wh_log_level level, const char *worker, const char *jid, const char *fmt, va_list ap);

#define wh_log_debug(...) wh_log(WH_LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define wh_log_info(...) wh_log(WH_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define wh_log_warn(...) wh_log(WH_LOG_WARN, NULL, NULL, __VA_ARGS__)
#define wh_log_error(...) wh_log(WH_LOG_ERROR, NULL, NULL, __VA_ARGS__)

#endif
