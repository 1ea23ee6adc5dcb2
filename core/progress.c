#include "progress.h"

#include <math.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define TTY_INTERVAL 0.1   /* seconds between redraws on a terminal */
#define PLAIN_INTERVAL 10. /* seconds between plain lines */
#define BAR_MAX 30
#define BAR_MIN 8

static double monotonic_seconds(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(const qh_progress *p) { return p->clock ? p->clock(p->clock_ctx) : monotonic_seconds(NULL); }

void qh_format_duration(double seconds, char *buf, size_t size)
{
    if (!isfinite(seconds) || seconds < 0 || seconds > 1e9) {
        snprintf(buf, size, "--:--");
        return;
    }
    long long t = (long long)seconds;
    long long h = t / 3600;
    int m = (int)(t / 60 % 60), s = (int)(t % 60);
    if (h) snprintf(buf, size, "%lld:%02d:%02d", h, m, s);
    else snprintf(buf, size, "%d:%02d", m, s);
}

void qh_format_rate(double r, char *buf, size_t size)
{
    if (!isfinite(r) || r < 0) snprintf(buf, size, "--");
    else if (r < 1) snprintf(buf, size, "%.3f", r);
    else if (r < 10) snprintf(buf, size, "%.2f", r);
    else if (r < 100) snprintf(buf, size, "%.1f", r);
    else snprintf(buf, size, "%.0f", r);
}

static int terminal_columns(const qh_progress *p)
{
    if (p->columns > 0) return p->columns;
    struct winsize ws;
    int fd = p->out ? fileno(p->out) : -1;
    if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

/* Cut s to at most max bytes without splitting a UTF-8 character. */
static void cut_utf8(char *s, size_t max)
{
    if (strlen(s) <= max) return;
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) max--;
    s[max] = '\0';
}

/* Compose the current line (no '\r', no newline) into buf. */
static void compose(const qh_progress *p, double t, int final, char *buf, size_t size)
{
    double elapsed = t - p->t_start;
    if (!(elapsed >= 0)) elapsed = 0;
    int64_t worked = p->done - p->skipped;
    double rate = elapsed > 0 && worked > 0 ? (double)worked / elapsed : NAN;
    int known = p->total > 0;
    double frac = known ? (double)p->done / (double)p->total : 0;
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    char r[32], el[32], eta[40];
    qh_format_rate(rate, r, sizeof r);
    qh_format_duration(elapsed, el, sizeof el);
    if (final) snprintf(eta, sizeof eta, "%s", known && p->done < p->total ? "stopped" : "done");
    else {
        char d[32];
        double left = known && isfinite(rate) ? (double)(p->total - p->done) / rate : NAN;
        qh_format_duration(left < 0 ? 0 : left, d, sizeof d);
        snprintf(eta, sizeof eta, "ETA %s", d);
    }
    char counts[64];
    if (known) snprintf(counts, sizeof counts, "%lld/%lld", (long long)p->done, (long long)p->total);
    else snprintf(counts, sizeof counts, "%lld", (long long)p->done);

    if (!p->tty) {
        if (known)
            snprintf(buf, size, "%s: %.1f%% %s %s, %s %s/s, elapsed %s, %s", p->label, frac * 100, counts, p->unit, r,
                     p->unit, el, eta);
        else
            snprintf(buf, size, "%s: %s %s, %s %s/s, elapsed %s%s%s", p->label, counts, p->unit, r, p->unit, el,
                     final ? ", " : "", final ? eta : "");
        return;
    }
    /* terminal: label [bar] pct counts  rate  elapsed  ETA, the bar sized to fit; the count
     * and rate are padded so the bar keeps its width from one redraw to the next */
    char stats[256];
    if (known) {
        char tot[24];
        int digits = snprintf(tot, sizeof tot, "%lld", (long long)p->total);
        snprintf(counts, sizeof counts, "%*lld/%s", digits, (long long)p->done, tot);
        snprintf(stats, sizeof stats, "%5.1f%% %s %s  %5s %s/s  %s  %s", frac * 100, counts, p->unit, r, p->unit, el,
                 eta);
    } else
        snprintf(stats, sizeof stats, "%s %s  %5s %s/s  %s%s%s", counts, p->unit, r, p->unit, el, final ? "  " : "",
                 final ? eta : "");
    int cols = terminal_columns(p);
    int room = cols - 1 - (int)strlen(p->label) - 1 - (int)strlen(stats) - 3;
    int bar = known ? (room > BAR_MAX ? BAR_MAX : room) : 0;
    if (bar >= BAR_MIN) {
        char b[BAR_MAX + 1];
        int fill = (int)(frac * bar);
        for (int i = 0; i < bar; i++) b[i] = i < fill ? '#' : '.';
        b[bar] = '\0';
        snprintf(buf, size, "%s [%s] %s", p->label, b, stats);
    } else
        snprintf(buf, size, "%s %s", p->label, stats);
    cut_utf8(buf, cols > 1 ? (size_t)cols - 1 : 1);
}

static void draw(qh_progress *p, double t, int final)
{
    char line[512];
    compose(p, t, final, line, sizeof line);
    if (p->tty) {
        int len = (int)strlen(line);
        /* blank out the tail of a longer previous line */
        fprintf(p->out, "\r%s%*s", line, p->width > len ? p->width - len : 0, "");
        p->width = len;
        if (final) fputc('\n', p->out);
    } else
        fprintf(p->out, "%s\n", line);
    fflush(p->out);
    p->t_last = t;
}

/* Copy s without control characters, which would break the line. */
static void copy_clean(char *dst, size_t size, const char *s)
{
    snprintf(dst, size, "%s", s ? s : "");
    cut_utf8(dst, size - 1);
    for (char *c = dst; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = ' ';
}

void qh_progress_begin(qh_progress *p, FILE *out, const char *label, int64_t total, const char *unit)
{
    double (*clock)(void *) = p->clock;
    void *ctx = p->clock_ctx;
    int force = p->force_tty, columns = p->columns;
    memset(p, 0, sizeof *p);
    p->clock = clock, p->clock_ctx = ctx, p->force_tty = force, p->columns = columns;
    p->out = out ? out : stderr;
    copy_clean(p->label, sizeof p->label, label);
    copy_clean(p->unit, sizeof p->unit, unit ? unit : "items");
    p->total = total;
    if (force) p->tty = force > 0;
    else {
        int fd = fileno(p->out);
        p->tty = fd >= 0 && isatty(fd);
    }
    p->t_start = p->t_last = now(p);
    p->active = 1;
    if (p->tty) draw(p, p->t_start, 0);
}

void qh_progress_update(qh_progress *p, int64_t done)
{
    if (!p->active) return;
    p->done = done;
    double t = now(p);
    if (t - p->t_last >= (p->tty ? TTY_INTERVAL : PLAIN_INTERVAL)) draw(p, t, 0);
}

void qh_progress_skip(qh_progress *p, int64_t done)
{
    if (!p->active) return;
    p->skipped += done - p->done;
    qh_progress_update(p, done);
}

void qh_progress_end(qh_progress *p)
{
    if (!p->active) return;
    draw(p, now(p), 1);
    p->active = 0;
}
