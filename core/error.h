/* Error reporting shared by all of libqhead.
 *
 * Functions that can fail return an int status: QH_OK, or QH_EINPUT when the user's input
 * (a file, an argument) is bad, QH_ESYS when the machine failed us (out of memory, I/O).
 * The failing function records one human-readable line (naming the file or argument and the
 * problem) with qh_fail(); executables print it as "prog: <line>" and exit with status 2
 * for QH_EINPUT. The message is thread-local so OpenMP workers cannot clobber each other. */
#ifndef QHEAD_ERROR_H
#define QHEAD_ERROR_H

enum { QH_OK = 0, QH_ESYS = 1, QH_EINPUT = 2 };

/* Record a message and return code, so callers can write `return qh_fail(QH_EINPUT, ...)`. */
int qh_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like qh_fail, appending ": strerror(errno)". */
int qh_fail_errno(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *qh_last_error(void);
void qh_clear_error(void);

/* Print "prog: <last error>" on stderr; returns the exit status to use (2 for input errors). */
int qh_report(const char *prog, int code);

#endif
