/* What train-head leaves for people to read: train_log.csv, loss_curve.svg, and the log and
 * hyper-parameters inside the head file. Rewritten (atomically) after every log row, so a run
 * stopped early still shows its curve. */
#ifndef QHEAD_TRAIN_REPORT_H
#define QHEAD_TRAIN_REPORT_H

#include "head_train.h"

/* Columns of the CSV and of the head file's /train_log, in order. */
#define QH_TRAIN_LOG_COLS 7
extern const char *const qh_train_log_columns[QH_TRAIN_LOG_COLS];

/* epoch,step,train_loss,val_loss,val_accuracy,val_macro_f1,epoch_end: one line per row. */
int qh_train_log_write_csv(const qh_train_log *log, const char *path);
/* Train and val loss against optimizer steps, the best val loss marked in the title. */
int qh_train_log_write_svg(const qh_train_log *log, int64_t steps_per_epoch, const char *path);
/* Rows as a [n, QH_TRAIN_LOG_COLS] matrix (malloc'd) for the head file. */
double *qh_train_log_matrix(const qh_train_log *log);

#endif
