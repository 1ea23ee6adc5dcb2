/* A reference measured in the same command as a benchmark (transformers, PyTorch's attention):
 * runs a helper script, echoes its output and hands each line that is a JSON object to on_json.
 * Header-only: each bench/bench_*.c is a program of its own. */
#ifndef QHEAD_BENCH_SCRIPT_H
#define QHEAD_BENCH_SCRIPT_H

#include <cjson/cJSON.h>
#include <stdio.h>

typedef void (*bench_json_fn)(const cJSON *j, void *ctx);

/* Runs cmd (what names it in the output); returns its exit status, -1 when it did not start. */
static inline int bench_run_script(const char *what, const char *cmd, bench_json_fn on_json, void *ctx)
{
    printf("# %s: %s\n", what, cmd);
    fflush(stdout);
    FILE *pp = popen(cmd, "r");
    char line[8192];
    while (pp && fgets(line, sizeof line, pp)) {
        fputs(line, stdout);
        cJSON *j = line[0] == '{' ? cJSON_Parse(line) : NULL;
        if (j) on_json(j, ctx);
        cJSON_Delete(j);
    }
    int st = pp ? pclose(pp) : -1;
    if (st) printf("# %s exited with status %d\n", what, st);
    return st;
}

#endif
