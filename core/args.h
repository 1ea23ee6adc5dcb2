/* Checked parsing of command-line values: a bad value is one QH_EINPUT line naming the option. */
#ifndef QHEAD_ARGS_H
#define QHEAD_ARGS_H

int qh_arg_long(const char *opt, const char *v, long lo, long hi, long *out);
/* A finite number in [lo, hi]. */
int qh_arg_double(const char *opt, const char *v, double lo, double hi, double *out);

#endif
