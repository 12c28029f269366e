/* log.c -- see log.h. */
#include "core/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/err.h"

static atomic_int g_level = WH_LOG_INFO;
static atomic_int g_format = WH_LOG_TEXT;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* How each byte is written inside a JSON string: 0 raw, 'u' as \u00xx,
 * otherwise the letter of its short escape; the same bytes as json/json.c's
 * wh_json_write_string, which core/ may not include. */
static const char escape_kind[256] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
    [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u', [0x05] = 'u',
    [0x06] = 'u', [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u', [0x0f] = 'u', [0x10] = 'u',
    [0x11] = 'u', [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u', [0x16] = 'u',
    [0x17] = 'u', [0x18] = 'u', [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u', [0x1c] = 'u',
    [0x1d] = 'u', [0x1e] = 'u', [0x1f] = 'u', ['"'] = '"', ['\\'] = '\\',
};

/* Appends s[0..len) to out as a quoted JSON string. */
static void put_json_string(wh_buf *out, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    wh_buf_putc(out, '"');
    size_t run = 0; /* start of the pending run of raw bytes */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char kind = escape_kind[ch];
        if (kind == 0) continue;
        wh_buf_append(out, s + run, i - run);
        run = i + 1;
        if (kind == 'u') {
            char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            wh_buf_append(out, e, 6);
        } else {
            char e[2] = {'\\', kind};
            wh_buf_append(out, e, 2);
        }
    }
    wh_buf_append(out, s + run, len - run);
    wh_buf_putc(out, '"');
}

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
        if (worker) { wh_buf_puts(&line, ",\"worker\":"); put_json_string(&line, worker, strlen(worker)); }
        if (jid) { wh_buf_puts(&line, ",\"jid\":"); put_json_string(&line, jid, strlen(jid)); }
        wh_buf_puts(&line, ",\"msg\":");
        put_json_string(&line, wh_buf_cstr(&msg), msg.len);
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
