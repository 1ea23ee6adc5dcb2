#include "args.h"

#include "error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

int qh_arg_long(const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi)
        return qh_fail(QH_EINPUT, "%s: '%s' is not an integer in [%ld, %ld]", opt, v, lo, hi);
    *out = x;
    return QH_OK;
}

int qh_arg_double(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(x) || x < lo || x > hi)
        return qh_fail(QH_EINPUT, "%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
    *out = x;
    return QH_OK;
}
