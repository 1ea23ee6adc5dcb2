/* The feature cache: reuse, resume after an interruption (an error and a real SIGKILL),
 * rebuild of mismatched or corrupt caches, and h5py-style layout. The "backbone" here is a
 * deterministic function of the token ids, counted so the test knows what was recomputed. */
#include "testutil.h"

#include "error.h"
#include "feature_cache.h"
#include "fileio.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define H 8
#define N 50
#define CHUNK 8 /* 7 parts, the last one short */

typedef struct {
    int calls;
    int64_t sequences;
    int fail_on_call; /* return an error on this call (1-based); 0 never */
    int slow_us;      /* sleep per call, for the SIGKILL test */
    int notify_on_call; /* write a byte to notify_fd when this call starts (1-based) */
    int notify_fd;
} fake_backbone;

static int fake_compute(void *user, const int32_t *ids, const int32_t *lengths, int n, float *hidden)
{
    fake_backbone *fb = user;
    fb->calls++;
    if (fb->fail_on_call && fb->calls == fb->fail_on_call) return qh_fail(QH_ESYS, "simulated crash");
    if (fb->notify_on_call && fb->calls == fb->notify_on_call && write(fb->notify_fd, "x", 1) != 1) return QH_ESYS;
    if (fb->slow_us) usleep((useconds_t)fb->slow_us);
    const int32_t *p = ids;
    for (int s = 0; s < n; s++) {
        for (int j = 0; j < H; j++) {
            double acc = 0;
            for (int i = 0; i < lengths[s]; i++) acc += (double)p[i] * (j + 1) + i;
            hidden[(size_t)s * H + j] = (float)acc / 100.0f;
        }
        p += lengths[s];
    }
    fb->sequences += n;
    return QH_OK;
}

typedef struct {
    int32_t ids[N * 12];
    int64_t offsets[N + 1];
    int32_t labels[N];
    qh_feature_spec spec;
} dataset;

static void make_dataset(dataset *d, const char *fingerprint)
{
    uint64_t rng = 11;
    d->offsets[0] = 0;
    for (int i = 0; i < N; i++) {
        int len = 1 + (int)(tu_rand_u64(&rng) % 12);
        for (int j = 0; j < len; j++) d->ids[d->offsets[i] + j] = (int32_t)(tu_rand_u64(&rng) % 1000);
        d->offsets[i + 1] = d->offsets[i] + len;
        d->labels[i] = i % 3;
    }
    d->spec = (qh_feature_spec){.split = "train", .model = "fake", .model_fingerprint = fingerprint,
                                .tokenizer = "fake.model", .hidden_size = H, .n = N, .ids = d->ids,
                                .offsets = d->offsets, .labels = d->labels, .chunk_size = CHUNK};
}

static void reference(dataset *d, float *out)
{
    fake_backbone fb = {0};
    for (int i = 0; i < N; i++) {
        int32_t len = (int32_t)(d->offsets[i + 1] - d->offsets[i]);
        fake_compute(&fb, d->ids + d->offsets[i], &len, 1, out + (size_t)i * H);
    }
}

static void test_build_reuse_and_read(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("feat");
    char *path = tu_path(dir, "train.h5");
    dataset d;
    make_dataset(&d, "fp-A");
    float got[N * H], want[N * H];
    reference(&d, want);
    fake_backbone fb = {0};
    qh_feature_stats st;
    assert_int_equal(qh_features_build(path, &d.spec, fake_compute, &fb, NULL, NULL, got, &st), QH_OK);
    assert_memory_equal(got, want, sizeof want); /* sorted by length inside parts, scattered back */
    assert_int_equal(st.parts_computed, 7);
    assert_int_equal(fb.sequences, N);
    char parts[4200];
    snprintf(parts, sizeof parts, "%s.parts", path);
    assert_false(qh_path_exists(parts)); /* parts removed once the file is complete */
    /* second run: nothing computed */
    fake_backbone fb2 = {0};
    memset(got, 0, sizeof got);
    assert_int_equal(qh_features_build(path, &d.spec, fake_compute, &fb2, NULL, NULL, got, &st), QH_OK);
    assert_int_equal(fb2.calls, 0);
    assert_true(st.reused_file);
    assert_memory_equal(got, want, sizeof want);
    /* plain reader (what evaluate and people use) */
    int64_t n;
    int h;
    float *hid;
    int32_t *lab;
    assert_int_equal(qh_features_read(path, &n, &h, &hid, &lab), QH_OK);
    assert_int_equal(n, N);
    assert_int_equal(h, H);
    assert_memory_equal(hid, want, sizeof want);
    assert_memory_equal(lab, d.labels, sizeof d.labels);
    free(hid);
    free(lab);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void test_resume_after_error(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("feat");
    char *path = tu_path(dir, "train.h5");
    dataset d;
    make_dataset(&d, "fp-A");
    float got[N * H], want[N * H];
    reference(&d, want);
    fake_backbone crash = {.fail_on_call = 4};
    qh_feature_stats st;
    assert_int_equal(qh_features_build(path, &d.spec, fake_compute, &crash, NULL, NULL, got, &st), QH_ESYS);
    assert_false(qh_path_exists(path));
    fake_backbone fb = {0};
    assert_int_equal(qh_features_build(path, &d.spec, fake_compute, &fb, NULL, NULL, got, &st), QH_OK);
    assert_int_equal(st.parts_reused, 3);
    assert_int_equal(st.parts_computed, 4);
    assert_int_equal(fb.sequences, N - 3 * CHUNK); /* finished parts were not recomputed */
    assert_memory_equal(got, want, sizeof want);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* Fork a child that builds the cache with a slow backbone; it writes a byte to `ready` when
 * it starts computing part `notify_part` (1-based), then goes on. */
static pid_t start_slow_child(dataset *d, const char *path, int notify_part, int ready_fd, int slow_us)
{
    pid_t pid = fork();
    if (pid == 0) {
        fake_backbone slow = {.slow_us = slow_us, .notify_on_call = notify_part, .notify_fd = ready_fd};
        float buf[N * H];
        qh_feature_stats st;
        if (qh_features_build(path, &d->spec, fake_compute, &slow, NULL, NULL, buf, &st) != QH_OK)
            fprintf(stderr, "child: %s\n", qh_last_error());
        _exit(0);
    }
    return pid;
}

/* Resume after the kill and check the result equals the uninterrupted one. */
static void resume_and_check(dataset *d, const char *path, const float *want, int expect_reused)
{
    fake_backbone fb = {0};
    float got[N * H];
    qh_feature_stats st;
    assert_int_equal(qh_features_build(path, &d->spec, fake_compute, &fb, NULL, NULL, got, &st), QH_OK);
    if (expect_reused >= 0) assert_int_equal(st.parts_reused, expect_reused);
    if (!st.reused_file) assert_int_equal(st.parts_reused + st.parts_computed, 7);
    /* finished parts (a prefix) are never recomputed */
    int64_t reused_rows = st.reused_file ? N : (int64_t)st.parts_reused * CHUNK;
    assert_int_equal(fb.sequences, N - (reused_rows > N ? N : reused_rows));
    assert_memory_equal(got, want, sizeof(float) * N * H);
}

/* A real SIGKILL while a part is being computed, at several parts: the finished parts are
 * reused, and the result equals the uninterrupted one. Then kills at arbitrary moments
 * (inside compute, inside an HDF5 write, during the final file) must also resume cleanly. */
static void test_resume_after_sigkill(void **state)
{
    (void)state;
    dataset d;
    make_dataset(&d, "fp-A");
    float want[N * H];
    reference(&d, want);
    for (int kill_in = 1; kill_in <= 7; kill_in += 3) {
        char *dir = tu_mkdtemp("featkill");
        char *path = tu_path(dir, "train.h5");
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = start_slow_child(&d, path, kill_in, fds[1], 2000000);
        char byte;
        assert_int_equal(read(fds[0], &byte, 1), 1); /* the child is inside part kill_in */
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        close(fds[0]);
        close(fds[1]);
        assert_false(qh_path_exists(path));
        resume_and_check(&d, path, want, kill_in - 1);
        tu_rmtree(dir);
        free(path);
        free(dir);
    }
    uint64_t rng = 5;
    for (int trial = 0; trial < 4; trial++) {
        char *dir = tu_mkdtemp("featkill");
        char *path = tu_path(dir, "train.h5");
        pid_t pid = start_slow_child(&d, path, 0, -1, 3000);
        usleep((useconds_t)(tu_rand_u64(&rng) % 40000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        resume_and_check(&d, path, want, -1);
        tu_rmtree(dir);
        free(path);
        free(dir);
    }
}

static void test_mismatch_and_corruption_rebuild(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("feat");
    char *path = tu_path(dir, "train.h5");
    dataset a, b;
    make_dataset(&a, "fp-A");
    make_dataset(&b, "fp-B"); /* same data, another model */
    float got[N * H], want[N * H];
    reference(&a, want);
    fake_backbone fb = {0};
    qh_feature_stats st;
    assert_int_equal(qh_features_build(path, &a.spec, fake_compute, &fb, NULL, NULL, got, &st), QH_OK);
    fake_backbone fb2 = {0};
    assert_int_equal(qh_features_build(path, &b.spec, fake_compute, &fb2, NULL, NULL, got, &st), QH_OK);
    assert_int_equal(fb2.sequences, N);
    assert_non_null(strstr(st.note, "another model"));
    /* a changed label changes the identity too */
    b.labels[5] = 2 - b.labels[5];
    fake_backbone fb3 = {0};
    assert_int_equal(qh_features_build(path, &b.spec, fake_compute, &fb3, NULL, NULL, got, &st), QH_OK);
    assert_int_equal(fb3.sequences, N);
    /* garbage in place of the cache */
    FILE *fp = fopen(path, "wb");
    fputs("not hdf5 at all", fp);
    fclose(fp);
    fake_backbone fb4 = {0};
    assert_int_equal(qh_features_build(path, &a.spec, fake_compute, &fb4, NULL, NULL, got, &st), QH_OK);
    assert_int_equal(fb4.sequences, N);
    assert_non_null(strstr(st.note, "not a readable HDF5"));
    assert_memory_equal(got, want, sizeof want);
    /* a truncated cache */
    assert_int_equal(truncate(path, 3000), 0);
    fake_backbone fb5 = {0};
    assert_int_equal(qh_features_build(path, &a.spec, fake_compute, &fb5, NULL, NULL, got, &st), QH_OK);
    assert_int_equal(fb5.sequences, N);
    assert_memory_equal(got, want, sizeof want);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void test_corrupt_part_recomputed(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp("feat");
    char *path = tu_path(dir, "train.h5");
    dataset d;
    make_dataset(&d, "fp-A");
    float got[N * H], want[N * H];
    reference(&d, want);
    fake_backbone crash = {.fail_on_call = 3};
    qh_feature_stats st;
    assert_int_equal(qh_features_build(path, &d.spec, fake_compute, &crash, NULL, NULL, got, &st), QH_ESYS);
    char part[4400];
    snprintf(part, sizeof part, "%s.parts/part-00001.h5", path);
    FILE *fp = fopen(part, "r+b");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_SET);
    fputs("garbage", fp);
    fclose(fp);
    fake_backbone fb = {0};
    assert_int_equal(qh_features_build(path, &d.spec, fake_compute, &fb, NULL, NULL, got, &st), QH_OK);
    assert_int_equal(st.parts_reused, 1);
    assert_memory_equal(got, want, sizeof want);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_reuse_and_read),
        cmocka_unit_test(test_resume_after_error),
        cmocka_unit_test(test_resume_after_sigkill),
        cmocka_unit_test(test_mismatch_and_corruption_rebuild),
        cmocka_unit_test(test_corrupt_part_recomputed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
