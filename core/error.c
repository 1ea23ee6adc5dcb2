#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

/* The message is one line even when it quotes a hostile file (a tensor name or a config string
 * holding a newline): control characters other than tab become '?'. */
static void one_line(char *s)
{
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f) *s = '?';
}

static void vrecord(const char *fmt, va_list ap)
{
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    one_line(last_error);
}

int qh_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrecord(fmt, ap);
    va_end(ap);
    return code;
}

int qh_fail_errno(int code, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vrecord(fmt, ap);
    va_end(ap);
    size_t n = strlen(last_error);
    snprintf(last_error + n, sizeof last_error - n, ": %s", strerror(saved));
    return code;
}

const char *qh_last_error(void) { return last_error[0] ? last_error : "unknown error"; }

void qh_clear_error(void) { last_error[0] = '\0'; }

int qh_report(const char *prog, int code)
{
    fprintf(stderr, "%s: %s\n", prog, qh_last_error());
    return code == QH_EINPUT ? 2 : 1;
}
