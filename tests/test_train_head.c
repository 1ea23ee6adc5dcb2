/* train-head end to end on a tiny random model and a generated task: outputs, cache reuse
 * (same head bit for bit), a corrupt cache rebuilt, h5py-readable files, and bad inputs
 * answered with exit status 2 without losing earlier outputs. */
#include "testutil.h"

#include "error.h"
#include "head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRAIN_HEAD QHEAD_BIN_DIR "/train-head"
#define MAKE_MODEL QHEAD_BIN_DIR "/qhead-make-model"
#define TOKENIZER QHEAD_FIXTURES "/tokenizer/bpe.model"

static char *dir;
static int quiet_failures; /* expect_refusal expects them */

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp("trainhead");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s --out '%s/model' --vocab 1000 --seed 3 && cp '%s' '%s/model/tokenizer.model'", MAKE_MODEL,
             dir, TOKENIZER, dir);
    assert_int_equal(tu_run(cmd, NULL, NULL), 0);
    char task[4096];
    snprintf(task, sizeof task, "%s/task", dir);
    tu_write_sentiment_task(task, 400, 90, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

/* Run train-head on the test model and task with extra arguments. */
static int train(const char *out, const char *extra, char **so, char **se)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s --backend cpu --model '%s/model' --data '%s/task' --out '%s/%s' --epochs 3 --log-every 5 %s",
             TRAIN_HEAD, dir, dir, dir, out, extra);
    int rc = tu_run(cmd, so, se);
    if (rc && !quiet_failures) fprintf(stderr, "train-head %s: exit %d: %s\n", extra, rc, se ? *se : "");
    return rc;
}

static qh_head *load_head(const char *out)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s/head.h5", dir, out);
    qh_head *h = NULL;
    assert_int_equal(qh_head_load(p, &h), QH_OK);
    return h;
}

static char *read_out(const char *out, const char *name)
{
    char cmd[4096], *s = NULL;
    snprintf(cmd, sizeof cmd, "cat '%s/%s/%s'", dir, out, name);
    assert_int_equal(tu_run(cmd, &s, NULL), 0);
    return s;
}

static void test_trains_and_writes_outputs(void **state)
{
    (void)state;
    char *so, *se;
    assert_int_equal(train("a", "", &so, &se), 0);
    assert_non_null(strstr(so, "best val loss"));
    assert_non_null(strstr(so, "400 train / 90 val tweets, 3 classes"));
    /* 13 steps per epoch, rows every 5 steps and at epoch ends: 5 10 13 | 15 20 25 26 | 30 35 39 */
    char *csv = read_out("a", "train_log.csv");
    assert_int_equal(tu_count_lines(csv), 1 + 10);
    assert_true(strncmp(csv, "epoch,step,train_loss,val_loss,val_accuracy,val_macro_f1,epoch_end\n", 67) == 0);
    assert_non_null(strstr(csv, "\n1,13,"));
    assert_non_null(strstr(csv, "\n3,39,"));
    char *svg = read_out("a", "loss_curve.svg");
    assert_non_null(strstr(svg, "<svg"));
    assert_non_null(strstr(svg, "val loss"));
    assert_non_null(strstr(svg, "</svg>"));
    qh_head *h = load_head("a");
    assert_int_equal(h->num_labels, 3);
    assert_int_equal(h->hidden_size, 128);
    assert_null(h->bias);
    assert_string_equal(h->label_names[2], "positive");
    assert_int_equal(strlen(h->model_fingerprint), 64);
    /* the last-word signal is learnable: val accuracy well above the 1/3 of chance */
    double best_acc = 0;
    for (char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        double e, st, tl, vl, acc;
        assert_int_equal(sscanf(line + 1, "%lf,%lf,%lf,%lf,%lf", &e, &st, &tl, &vl, &acc), 5);
        best_acc = acc > best_acc ? acc : best_acc;
    }
    assert_true(best_acc > 0.6);
    qh_head_free(h);
    free(csv);
    free(svg);
    free(so);
    free(se);
}

static void test_cache_reused_and_corrupt_cache_rebuilt(void **state)
{
    (void)state;
    char *so, *se;
    assert_int_equal(train("b", "", &so, &se), 0);
    qh_head *first = load_head("b");
    free(so), free(se);
    assert_int_equal(train("b", "", &so, &se), 0);
    assert_non_null(strstr(so, "features train: reused"));
    assert_non_null(strstr(so, "features val: reused"));
    assert_null(strstr(so, "loading")); /* the model is not touched */
    qh_head *again = load_head("b");
    assert_memory_equal(first->weight, again->weight, sizeof(float) * 3 * 128);
    free(so), free(se);
    /* garbage in place of the train cache: rebuilt, same head */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "for f in '%s'/b/features/task-train-*.h5; do echo garbage > \"$f\"; done", dir);
    assert_int_equal(tu_run(cmd, NULL, NULL), 0);
    assert_int_equal(train("b", "", &so, &se), 0);
    assert_non_null(strstr(so, "rebuilding"));
    qh_head *rebuilt = load_head("b");
    assert_memory_equal(first->weight, rebuilt->weight, sizeof(float) * 3 * 128);
    free(so), free(se);
    /* a different seed gives a different head from the same cache */
    assert_int_equal(train("b", "--seed 7 --bias --class-weights --lr 3e-3 --batch-size 16", &so, &se), 0);
    qh_head *other = load_head("b");
    assert_non_null(other->bias);
    assert_memory_not_equal(first->weight, other->weight, sizeof(float) * 3 * 128);
    free(so), free(se);
    qh_head_free(first);
    qh_head_free(again);
    qh_head_free(rebuilt);
    qh_head_free(other);
}

/* h5py (the reader the README promises) sees the documented layout. */
static void test_h5py_reads_outputs(void **state)
{
    (void)state;
    if (tu_run("/usr/bin/python3 -c 'import h5py' 2>/dev/null", NULL, NULL) != 0) {
        print_message("h5py not installed: layout check skipped\n");
        skip();
    }
    char *so, *se;
    assert_int_equal(train("c", "--patience 2", &so, &se), 0);
    free(so), free(se);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py,glob,json\n"
             "f=h5py.File(glob.glob('%s/c/features/task-train-*.h5')[0],'r')\n"
             "assert f['hidden'].shape==(400,128) and f['labels'].shape==(400,)\n"
             "assert f.attrs['split']=='train' and len(f.attrs['model_fingerprint'])==64\n"
             "h=h5py.File('%s/c/head.h5','r')\n"
             "assert h['weight'].shape==(3,128) and list(h.attrs['labels'])==['negative','neutral','positive']\n"
             "hp=json.loads(h.attrs['hyperparameters']); assert hp['patience']==2 and hp['train_examples']==400\n"
             "assert list(h['train_log'].attrs['columns'])[:4]==['epoch','step','train_loss','val_loss']\n"
             "print('ok')\"",
             dir, dir);
    assert_int_equal(tu_run(cmd, &so, &se), 0);
    assert_string_equal(so, "ok\n");
    free(so), free(se);
}

static void expect_refusal(const char *out, const char *extra, const char *needle)
{
    char *so, *se;
    quiet_failures = 1;
    int rc = train(out, extra, &so, &se);
    quiet_failures = 0;
    if (rc != 2 || !strstr(se, needle)) fprintf(stderr, "args '%s': rc %d, stderr: %s\n", extra, rc, se);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(se, needle));
    free(so), free(se);
}

static void test_bad_inputs_exit_2_and_keep_outputs(void **state)
{
    (void)state;
    char *so, *se;
    assert_int_equal(train("d", "", &so, &se), 0);
    free(so), free(se);
    char *before = read_out("d", "head.h5");
    expect_refusal("d", "--model /nonexistent/llama", "no model at /nonexistent/llama");
    expect_refusal("d", "--model /nonexistent/llama", "huggingface-cli download");
    expect_refusal("d", "--data /nonexistent/task", "no TweetEval data at /nonexistent/task");
    expect_refusal("d", "--epochs 0", "--epochs: '0' is not an integer");
    expect_refusal("d", "--lr abc", "--lr: 'abc' is not a number");
    expect_refusal("d", "--backend tpu", "--backend: 'tpu'");
    expect_refusal("d", "--frobnicate 3", "--frobnicate: unknown option");
    expect_refusal("d", "--epochs", "--epochs: unknown argument or missing value");
    /* a label outside mapping.txt, named with file and line */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp -r '%s/task' '%s/badtask' && sed -i '5s/.*/7/' '%s/badtask/val_labels.txt'", dir, dir, dir);
    assert_int_equal(tu_run(cmd, NULL, NULL), 0);
    snprintf(cmd, sizeof cmd, "--data '%s/badtask'", dir);
    expect_refusal("d", cmd, "val_labels.txt");
    char *after = read_out("d", "head.h5");
    assert_memory_equal(before, after, 64); /* earlier head untouched */
    free(before);
    free(after);
    /* one line on stderr for a plain refusal */
    quiet_failures = 1;
    assert_int_equal(train("d", "--epochs -1", &so, &se), 2);
    quiet_failures = 0;
    assert_int_equal(tu_count_lines(se), 1);
    free(so), free(se);
}

static void test_help(void **state)
{
    (void)state;
    char *so, *se;
    assert_int_equal(tu_run(TRAIN_HEAD " --help", &so, &se), 0);
    assert_non_null(strstr(so, "--class-weights"));
    assert_non_null(strstr(so, "--patience"));
    free(so), free(se);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trains_and_writes_outputs),
        cmocka_unit_test(test_cache_reused_and_corrupt_cache_rebuilt),
        cmocka_unit_test(test_h5py_reads_outputs),
        cmocka_unit_test(test_bad_inputs_exit_2_and_keep_outputs),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
