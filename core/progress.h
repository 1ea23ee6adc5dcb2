/* Progress reporting for long loops (feature extraction over 45,000 tweets, evaluation).
 *
 * On a terminal (isatty(fileno(out))) one line is redrawn in place with '\r', at most about
 * ten times a second:
 *   extract [###########.............]  45.0% 20250/45000 tweets  812 tweets/s  0:25  ETA 0:30
 * The bar narrows, then disappears, to keep the line within the terminal's width.
 * Elsewhere (a log file, a pipe, CI) a plain line is written at most every 10 seconds, plus
 * one at the end, with the same numbers and no '\r' or escape codes:
 *   extract: 45.0% 20250/45000 tweets, 812 tweets/s, elapsed 0:25, ETA 0:30
 *   extract: 100.0% 45000/45000 tweets, 818 tweets/s, elapsed 0:55, done
 * The rate is the average since begin over the units this run worked on (qh_progress_skip marks
 * units found done, a resumed job's finished parts, which would make it look fast); ETA =
 * remaining / rate. Times print as m:ss, or
 * h:mm:ss from one hour. A total <= 0 means unknown: no bar, percentage or ETA.
 *
 * Usage: zero-initialise (to take the real clock and ask isatty), optionally set `clock`,
 * `clock_ctx`, `force_tty` or `columns` (tests inject a fake clock this way), then
 *   qh_progress_begin(&p, stderr, "extract", 45000, "tweets");
 *   for (...) qh_progress_update(&p, done);
 *   qh_progress_end(&p);
 * begin keeps those four fields and resets the rest. One thread drives a qh_progress. */
#ifndef QHEAD_PROGRESS_H
#define QHEAD_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    /* settings kept by begin */
    double (*clock)(void *ctx); /* seconds, monotonic; NULL: CLOCK_MONOTONIC */
    void *clock_ctx;
    int force_tty; /* 0: decide with isatty; > 0: draw as on a terminal; < 0: plain lines */
    int columns;   /* terminal width; 0: ask the terminal (TIOCGWINSZ), 80 if it will not say */

    /* state, set by begin */
    FILE *out;
    char label[64];
    char unit[24];
    int64_t total, done;
    int64_t skipped;        /* of done: found done, not worked on (see qh_progress_skip) */
    double t_start, t_last; /* when begin ran; when the last line was written */
    int tty;                /* the decision made at begin */
    int width;              /* characters in the line last drawn on a terminal */
    int active;             /* between begin and end */
} qh_progress;

/* Start: remember the time, decide terminal or not; on a terminal draw the 0% line.
 * label and unit are copied (and shortened if long); unit NULL means "items". */
void qh_progress_begin(qh_progress *p, FILE *out, const char *label, int64_t total, const char *unit);
/* Record that `done` units are finished; redraws when the rate limit allows. */
void qh_progress_update(qh_progress *p, int64_t done);
/* Record that the count jumped to `done` without work (units already finished before, such as a
 * resumed job's parts): shown in the count and percentage, left out of the rate and ETA. */
void qh_progress_skip(qh_progress *p, int64_t done);
/* Final line (always written), ending with a newline. Calling it again does nothing. */
void qh_progress_end(qh_progress *p);

/* Helpers, exposed for tests and other reports: "m:ss" below an hour, else "h:mm:ss";
 * negative or non-finite seconds print as "--:--". */
void qh_format_duration(double seconds, char *buf, size_t size);
/* A rate with about three significant digits: "0.523", "52.3", "812", "24050". */
void qh_format_rate(double per_second, char *buf, size_t size);

#endif
