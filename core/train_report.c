#include "train_report.h"

#include "error.h"
#include "fileio.h"
#include "svg.h"

#include <stdio.h>
#include <stdlib.h>

const char *const qh_train_log_columns[QH_TRAIN_LOG_COLS] = {"epoch",        "step",         "train_loss", "val_loss",
                                                              "val_accuracy", "val_macro_f1", "epoch_end"};

int qh_train_log_write_csv(const qh_train_log *log, const char *path)
{
    qh_strbuf b = {0};
    int rc = QH_OK;
    for (int c = 0; c < QH_TRAIN_LOG_COLS && !rc; c++)
        rc = qh_strbuf_appendf(&b, "%s%s", qh_train_log_columns[c], c + 1 < QH_TRAIN_LOG_COLS ? "," : "\n");
    for (size_t i = 0; i < log->n && !rc; i++) {
        const qh_train_row *r = &log->rows[i];
        rc = qh_strbuf_appendf(&b, "%d,%lld,%.6f,%.6f,%.6f,%.6f,%d\n", r->epoch, (long long)r->step, r->train_loss,
                               r->val_loss, r->val_accuracy, r->val_macro_f1, r->epoch_end);
    }
    if (!rc) rc = qh_strbuf_save(&b, path);
    qh_strbuf_free(&b);
    return rc;
}

int qh_train_log_write_svg(const qh_train_log *log, int64_t steps_per_epoch, const char *path)
{
    size_t n = log->n;
    double *x = malloc(sizeof(double) * (n ? n : 1)), *tr = malloc(sizeof(double) * (n ? n : 1)),
           *va = malloc(sizeof(double) * (n ? n : 1));
    if (!x || !tr || !va) {
        free(x), free(tr), free(va);
        return qh_fail(QH_ESYS, "out of memory drawing the loss curve");
    }
    for (size_t i = 0; i < n; i++) {
        /* x in epochs, so runs with different batch sizes compare on one scale */
        x[i] = steps_per_epoch > 0 ? (double)log->rows[i].step / (double)steps_per_epoch : (double)log->rows[i].step;
        tr[i] = log->rows[i].train_loss;
        va[i] = log->rows[i].val_loss;
    }
    char title[160] = "train-head: loss";
    if (n)
        snprintf(title, sizeof title, "train vs val loss (best val %.4f at epoch %.2f%s)", log->rows[log->best_row].val_loss,
                 x[log->best_row], log->stopped_early ? ", stopped early" : "");
    qh_svg_series series[2] = {{.name = "train loss (mean since previous point)", .x = x, .y = tr, .n = n},
                               {.name = "val loss", .x = x, .y = va, .n = n}};
    qh_svg_opts o = {.title = title, .x_label = "epoch", .y_label = "cross-entropy"};
    qh_strbuf b = {0};
    int rc = qh_svg_line_chart(&b, &o, series, 2);
    if (!rc) rc = qh_strbuf_save(&b, path);
    qh_strbuf_free(&b);
    free(x), free(tr), free(va);
    return rc;
}

double *qh_train_log_matrix(const qh_train_log *log)
{
    double *m = malloc(sizeof(double) * QH_TRAIN_LOG_COLS * (log->n ? log->n : 1));
    if (!m) return NULL;
    for (size_t i = 0; i < log->n; i++) {
        const qh_train_row *r = &log->rows[i];
        double row[QH_TRAIN_LOG_COLS] = {r->epoch,        r->step,         r->train_loss, r->val_loss,
                                         r->val_accuracy, r->val_macro_f1, r->epoch_end};
        for (int c = 0; c < QH_TRAIN_LOG_COLS; c++) m[i * QH_TRAIN_LOG_COLS + c] = row[c];
    }
    return m;
}
