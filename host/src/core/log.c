/* log.c -- see log.h. */
#include "core/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "json/json.h"

static atomic_int g_level = WH_LOG_INFO;
static atomic_int g_format = WH_LOG_TEXT;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void wh_log_setup(wh_log_level level, wh_log_format format) {
    atomic_store(&g_level, (int)level);
    atomic_store(&g_format, (int)format);
}

wh_log_level wh_log_get_level(void) { return (wh_log_level)atomic_load(&g_level); }

int wh_log_parse_level(const char *s, wh_log_level *out) {
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) { *out = (wh_log_level)i; return 0; }
    return WH_EINVAL;
}

int wh_log_parse_format(const char *s, wh_log_format *out) {
    if (strcmp(s, "text") == 0) { *out = WH_LOG_TEXT; return 0; }
    if (strcmp(s, "json") == 0) { *out = WH_LOG_JSON; return 0; }
    return WH_EINVAL;
}

static void timestamp(char *out, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

void wh_logv(wh_log_level level, const char *worker, const char *jid, const char *fmt, va_list ap) {
    if ((int)level < atomic_load(&g_level)) return;
    char ts[40];
    timestamp(ts, sizeof ts);
    wh_buf msg = WH_BUF_INIT, line = WH_BUF_INIT;
    wh_buf_vprintf(&msg, fmt, ap);
    if (atomic_load(&g_format) == WH_LOG_JSON) {
        wh_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_names[level]);
        if (worker) { wh_buf_puts(&line, ",\"worker\":"); wh_json_write_string(&line, worker, strlen(worker)); }
        if (jid) { wh_buf_puts(&line, ",\"jid\":"); wh_json_write_string(&line, jid, strlen(jid)); }
        wh_buf_puts(&line, ",\"msg\":");
        wh_json_write_string(&line, wh_buf_cstr(&msg), msg.len);
        wh_buf_puts(&line, "}\n");
    } else {
        static const char *const tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
        wh_buf_printf(&line, "%s %s ", ts, tags[level]);
        if (worker && jid) wh_buf_printf(&line, "[%s jid=%s] ", worker, jid);
        else if (worker) wh_buf_printf(&line, "[%s] ", worker);
        else if (jid) wh_buf_printf(&line, "[jid=%s] ", jid);
        wh_buf_append(&line, msg.data ? msg.data : "", msg.len);
        wh_buf_putc(&line, '\n');
    }
    pthread_mutex_lock(&g_lock);
    size_t off = 0;
    while (off < line.len) {
        ssize_t w = write(STDERR_FILENO, line.data + off, line.len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    pthread_mutex_unlock(&g_lock);
    wh_buf_free(&msg);
    wh_buf_free(&line);
}

void wh_log(wh_log_level level, const char *worker, const char *jid, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wh_logv(level, worker, jid, fmt, ap);
    va_end(ap);
}
