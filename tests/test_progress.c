/* Progress reporting with an injected clock: plain lines every 10 s for logs, a '\r'-redrawn
 * line at most 10 times a second on a terminal, and no division by zero anywhere. */
#include "testutil.h"

#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double t;
} fake_clock;

static double fake_now(void *ctx) { return ((fake_clock *)ctx)->t; }

/* A memory stream collecting the output (fileno is -1, so never a terminal by itself). */
typedef struct {
    FILE *fp;
    char *buf;
    size_t len;
} capture;

static void cap_open(capture *c)
{
    c->buf = NULL, c->len = 0;
    c->fp = open_memstream(&c->buf, &c->len);
    assert_non_null(c->fp);
}

static char *cap_close(capture *c)
{
    fclose(c->fp);
    return c->buf;
}

static int count_char(const char *s, char ch)
{
    int n = 0;
    for (; *s; s++) n += *s == ch;
    return n;
}

/* Line i (0-based) of s, copied into buf. */
static const char *line_at(const char *s, int i, char *buf, size_t size)
{
    for (; i > 0; i--) {
        s = strchr(s, '\n');
        assert_non_null(s);
        s++;
    }
    size_t n = strcspn(s, "\n");
    snprintf(buf, size, "%.*s", (int)n, s);
    return buf;
}

static void test_format_helpers(void **state)
{
    (void)state;
    char b[32];
    struct {
        double s;
        const char *want;
    } d[] = {{0, "0:00"},          {9.99, "0:09"},       {59.9, "0:59"},  {61, "1:01"},
             {3599, "59:59"},      {3600, "1:00:00"},    {3723, "1:02:03"}, {12500, "3:28:20"},
             {360000, "100:00:00"}, {-1, "--:--"},        {NAN, "--:--"},  {INFINITY, "--:--"}};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) {
        qh_format_duration(d[i].s, b, sizeof b);
        assert_string_equal(b, d[i].want);
    }
    struct {
        double r;
        const char *want;
    } r[] = {{0, "0.000"}, {0.5234, "0.523"}, {5.234, "5.23"}, {52.34, "52.3"},
             {812.4, "812"}, {24050.3, "24050"}, {NAN, "--"},   {-1, "--"}};
    for (size_t i = 0; i < sizeof r / sizeof *r; i++) {
        qh_format_rate(r[i].r, b, sizeof b);
        assert_string_equal(b, r[i].want);
    }
}

/* Not a terminal: 45,000 tweets at 800 a second, updated every second for 56 s.
 * Lines at t = 10, 20, 30, 40, 50 and at the end: 6 lines.
 *   t = 10: done 8000, 8000/45000 = 17.78%, rate 800/s, ETA (45000 - 8000) / 800 = 46.25 s
 *   t = 50: done 40000, 88.9%, ETA 5000 / 800 = 6.25 s
 *   end at t = 56.25: done 45000 in 56.25 s = 800/s */
static void test_plain_lines(void **state)
{
    (void)state;
    fake_clock clk = {100};
    capture c;
    cap_open(&c);
    qh_progress p = {.clock = fake_now, .clock_ctx = &clk};
    qh_progress_begin(&p, c.fp, "extract", 45000, "tweets");
    assert_false(p.tty); /* a memory stream is not a terminal */
    for (int s = 1; s <= 56; s++) {
        clk.t = 100 + s;
        qh_progress_update(&p, 800 * s);
    }
    clk.t = 156.25;
    qh_progress_update(&p, 45000);
    qh_progress_end(&p);
    qh_progress_end(&p); /* twice: nothing more */
    qh_progress_update(&p, 1); /* after the end: ignored */
    char *out = cap_close(&c);
    assert_int_equal(tu_count_lines(out), 6);
    assert_null(strchr(out, '\r'));
    assert_null(strchr(out, '\x1b'));
    assert_int_equal(out[strlen(out) - 1], '\n');
    char line[256];
    assert_string_equal(line_at(out, 0, line, sizeof line),
                        "extract: 17.8% 8000/45000 tweets, 800 tweets/s, elapsed 0:10, ETA 0:46");
    assert_string_equal(line_at(out, 1, line, sizeof line),
                        "extract: 35.6% 16000/45000 tweets, 800 tweets/s, elapsed 0:20, ETA 0:36");
    assert_string_equal(line_at(out, 4, line, sizeof line),
                        "extract: 88.9% 40000/45000 tweets, 800 tweets/s, elapsed 0:50, ETA 0:06");
    assert_string_equal(line_at(out, 5, line, sizeof line),
                        "extract: 100.0% 45000/45000 tweets, 800 tweets/s, elapsed 0:56, done");
    free(out);
}

/* A resumed job: 20,000 of 45,000 found done at the start and 2,000 more found done midway
 * count in the totals but not in the rate: 800 tweets/s worked, not 2,800. */
static void test_plain_skipped(void **state)
{
    (void)state;
    fake_clock clk = {100};
    capture c;
    cap_open(&c);
    qh_progress p = {.clock = fake_now, .clock_ctx = &clk};
    qh_progress_begin(&p, c.fp, "extract", 45000, "tweets");
    qh_progress_skip(&p, 20000);
    clk.t = 110;
    qh_progress_update(&p, 28000);
    qh_progress_skip(&p, 30000);
    clk.t = 120;
    qh_progress_update(&p, 38000);
    qh_progress_end(&p);
    char *out = cap_close(&c);
    char line[256];
    /* 8,000 worked in 10 s: 800/s, 17,000 left: 21.25 s */
    assert_string_equal(line_at(out, 0, line, sizeof line),
                        "extract: 62.2% 28000/45000 tweets, 800 tweets/s, elapsed 0:10, ETA 0:21");
    /* 16,000 worked in 20 s, 7,000 left: 8.75 s */
    assert_string_equal(line_at(out, 1, line, sizeof line),
                        "extract: 84.4% 38000/45000 tweets, 800 tweets/s, elapsed 0:20, ETA 0:08");
    assert_string_equal(line_at(out, 2, line, sizeof line),
                        "extract: 84.4% 38000/45000 tweets, 800 tweets/s, elapsed 0:20, stopped");
    free(out);
}

/* Hours-long ETA, and updates that come rarely: a line whenever 10 s have passed.
 * 10,000,000 items, 1,000 done after 12.5 s: rate 80/s, ETA 9,999,000 / 80 = 124,987.5 s
 * = 34 h 43 min 7.5 s -> "34:43:07". */
static void test_plain_long_eta(void **state)
{
    (void)state;
    fake_clock clk = {0};
    capture c;
    cap_open(&c);
    qh_progress p = {.clock = fake_now, .clock_ctx = &clk, .force_tty = -1};
    qh_progress_begin(&p, c.fp, "eval", 10000000, NULL);
    clk.t = 5; /* too soon */
    qh_progress_update(&p, 400);
    clk.t = 12.5;
    qh_progress_update(&p, 1000);
    clk.t = 19; /* 6.5 s after the last line */
    qh_progress_update(&p, 1500);
    clk.t = 45; /* long gap: one line, not several */
    qh_progress_update(&p, 3600);
    clk.t = 50;
    qh_progress_end(&p); /* stopped early */
    char *out = cap_close(&c);
    assert_int_equal(tu_count_lines(out), 3);
    char line[256];
    assert_string_equal(line_at(out, 0, line, sizeof line),
                        "eval: 0.0% 1000/10000000 items, 80.0 items/s, elapsed 0:12, ETA 34:43:07");
    /* 3600 in 45 s = 80/s; 3600 in 50 s = 72/s */
    assert_non_null(strstr(line_at(out, 1, line, sizeof line), "3600/10000000 items, 80.0 items/s, elapsed 0:45"));
    assert_string_equal(line_at(out, 2, line, sizeof line),
                        "eval: 0.0% 3600/10000000 items, 72.0 items/s, elapsed 0:50, stopped");
    free(out);
}

/* Terminal: updates every 10 ms for 2 s give about 20 redraws, each starting with '\r';
 * end() adds the final one and the only newline. */
static void test_tty_redraws(void **state)
{
    (void)state;
    fake_clock clk = {0};
    capture c;
    cap_open(&c);
    qh_progress p = {.clock = fake_now, .clock_ctx = &clk, .force_tty = 1, .columns = 100};
    qh_progress_begin(&p, c.fp, "extract", 2000, "tweets");
    for (int ms = 10; ms <= 2000; ms += 10) {
        clk.t = ms / 1000.0;
        qh_progress_update(&p, ms);
    }
    qh_progress_end(&p);
    char *out = cap_close(&c);
    int draws = count_char(out, '\r');
    assert_true(draws >= 15 && draws <= 23); /* begin + at most 10 a second + end */
    assert_int_equal(count_char(out, '\n'), 1);
    assert_int_equal(out[strlen(out) - 1], '\n');
    assert_int_equal(out[0], '\r');
    /* each drawn line fits in 99 columns and has a bar */
    for (char *s = strtok(out, "\r\n"); s; s = strtok(NULL, "\r\n")) {
        assert_true(strlen(s) <= 99);
        assert_non_null(strstr(s, "extract ["));
        assert_non_null(strchr(s, ']'));
    }
    free(out);

    /* a mid-run line: 1000 of 2000 after 1 s */
    cap_open(&c);
    clk.t = 0;
    qh_progress_begin(&p, c.fp, "extract", 2000, "tweets");
    clk.t = 1;
    qh_progress_update(&p, 1000);
    fflush(c.fp);
    const char *last = strrchr(c.buf, '\r');
    assert_non_null(last);
    assert_non_null(strstr(last, "###############..............."));
    assert_non_null(strstr(last, " 50.0% 1000/2000 tweets   1000 tweets/s  0:01  ETA 0:01"));
    qh_progress_end(&p);
    free(cap_close(&c));
}

/* A narrow terminal drops the bar and still never wraps; a long label is cut. */
static void test_tty_narrow(void **state)
{
    (void)state;
    fake_clock clk = {0};
    capture c;
    cap_open(&c);
    qh_progress p = {.clock = fake_now, .clock_ctx = &clk, .force_tty = 1, .columns = 40};
    qh_progress_begin(&p, c.fp, "a rather long label for a narrow terminal", 100, "tweets");
    clk.t = 3;
    qh_progress_update(&p, 30);
    qh_progress_end(&p);
    char *out = cap_close(&c);
    for (char *s = strtok(out, "\r\n"); s; s = strtok(NULL, "\r\n")) {
        assert_true(strlen(s) <= 39);
        assert_null(strchr(s, '['));
    }
    free(out);
}

/* total 0 (unknown), nothing done, no time passed: no NaN, no inf, no crash. */
static void test_total_zero(void **state)
{
    (void)state;
    for (int tty = -1; tty <= 1; tty += 2) {
        fake_clock clk = {7};
        capture c;
        cap_open(&c);
        qh_progress p = {.clock = fake_now, .clock_ctx = &clk, .force_tty = tty, .columns = 80};
        qh_progress_begin(&p, c.fp, "empty", 0, "tweets");
        qh_progress_update(&p, 0);
        qh_progress_end(&p);
        char *out = cap_close(&c);
        assert_null(strstr(out, "nan"));
        assert_null(strstr(out, "inf"));
        assert_null(strchr(out, '%'));
        assert_non_null(strstr(out, "0 tweets"));
        assert_non_null(strstr(out, "-- tweets/s"));
        assert_non_null(strstr(out, "done"));
        assert_int_equal(count_char(out, '\n'), 1);
        free(out);
    }
    /* unknown total with progress: counts and rate, no ETA */
    fake_clock clk = {0};
    capture c;
    cap_open(&c);
    qh_progress p = {.clock = fake_now, .clock_ctx = &clk, .force_tty = -1};
    qh_progress_begin(&p, c.fp, "stream", -1, "rows");
    clk.t = 20;
    qh_progress_update(&p, 500);
    qh_progress_end(&p);
    char *out = cap_close(&c);
    char line[256];
    assert_string_equal(line_at(out, 0, line, sizeof line), "stream: 500 rows, 25.0 rows/s, elapsed 0:20");
    assert_string_equal(line_at(out, 1, line, sizeof line), "stream: 500 rows, 25.0 rows/s, elapsed 0:20, done");
    free(out);
}

/* The real clock and the isatty decision, untouched: a memory stream gets plain lines. */
static void test_defaults(void **state)
{
    (void)state;
    capture c;
    cap_open(&c);
    qh_progress p = {0};
    qh_progress_begin(&p, c.fp, "real\nclock", 3, "steps");
    assert_false(p.tty);
    for (int i = 1; i <= 3; i++) qh_progress_update(&p, i);
    qh_progress_end(&p);
    char *out = cap_close(&c);
    assert_int_equal(tu_count_lines(out), 1);
    assert_non_null(strstr(out, "real clock: 100.0% 3/3 steps"));
    assert_non_null(strstr(out, "done"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_helpers), cmocka_unit_test(test_plain_lines), cmocka_unit_test(test_plain_skipped),
        cmocka_unit_test(test_plain_long_eta), cmocka_unit_test(test_tty_redraws),
        cmocka_unit_test(test_tty_narrow),     cmocka_unit_test(test_total_zero),
        cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
