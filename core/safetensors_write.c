#include "safetensors_write.h"

#include "error.h"
#include "fileio.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    uint64_t bytes;
} declared;

struct qh_st_writer {
    qh_atomic_file file;
    cJSON *header, *meta;
    declared *tensors;
    size_t n, cap;
    uint64_t next_offset;
    size_t current;       /* tensor whose bytes are being written */
    uint64_t current_got; /* bytes of it written so far */
    int header_written;
};

int qh_st_writer_begin(const char *path, qh_st_writer **out)
{
    *out = NULL;
    qh_st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->header = cJSON_CreateObject())) {
        free(w);
        return qh_fail(QH_ESYS, "out of memory");
    }
    int rc = qh_atomic_begin(&w->file, path);
    if (rc) {
        cJSON_Delete(w->header);
        free(w);
        return rc;
    }
    *out = w;
    return QH_OK;
}

int qh_st_writer_declare(qh_st_writer *w, const char *name, qh_dtype dtype, int ndim, const int64_t *shape)
{
    if (w->header_written) return qh_fail(QH_ESYS, "%s: tensor '%s' declared after data", w->file.path, name);
    if (cJSON_GetObjectItemCaseSensitive(w->header, name))
        return qh_fail(QH_ESYS, "%s: tensor '%s' declared twice", w->file.path, name);
    uint64_t bytes = qh_dtype_size(dtype);
    cJSON *e = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *off = cJSON_CreateArray();
    for (int i = 0; i < ndim; i++) {
        bytes *= (uint64_t)shape[i];
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[i]));
    }
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)w->next_offset));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(w->next_offset + bytes)));
    cJSON_AddStringToObject(e, "dtype", qh_dtype_name(dtype));
    cJSON_AddItemToObject(e, "shape", sh);
    cJSON_AddItemToObject(e, "data_offsets", off);
    cJSON_AddItemToObject(w->header, name, e);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        declared *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return qh_fail(QH_ESYS, "out of memory");
        w->tensors = t;
        w->cap = cap;
    }
    w->tensors[w->n].name = strdup(name);
    w->tensors[w->n++].bytes = bytes;
    w->next_offset += bytes;
    return QH_OK;
}

int qh_st_writer_meta(qh_st_writer *w, const char *key, const char *value)
{
    if (w->header_written) return qh_fail(QH_ESYS, "%s: metadata after data", w->file.path);
    if (!w->meta) w->meta = cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(w->meta, key);
    cJSON_AddStringToObject(w->meta, key, value);
    return QH_OK;
}

static int write_header(qh_st_writer *w)
{
    if (w->meta) {
        cJSON_AddItemToObject(w->header, "__metadata__", w->meta);
        w->meta = NULL;
    }
    char *text = cJSON_PrintUnformatted(w->header);
    if (!text) return qh_fail(QH_ESYS, "out of memory");
    size_t len = strlen(text), padded = (len + 7) / 8 * 8; /* keeps tensor data 8-byte aligned */
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(le, 1, 8, w->file.fp) == 8 && fwrite(text, 1, len, w->file.fp) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', w->file.fp) != EOF;
    free(text);
    w->header_written = 1;
    return ok ? QH_OK : qh_fail_errno(QH_ESYS, "%s: write failed", w->file.tmp_path);
}

int qh_st_writer_write(qh_st_writer *w, const void *data, size_t bytes)
{
    if (!w->header_written) {
        int rc = write_header(w);
        if (rc) return rc;
    }
    const char *p = data;
    while (bytes) {
        while (w->current < w->n && w->current_got == w->tensors[w->current].bytes) w->current++, w->current_got = 0;
        if (w->current >= w->n) return qh_fail(QH_ESYS, "%s: more data than declared", w->file.path);
        uint64_t room = w->tensors[w->current].bytes - w->current_got;
        size_t take = bytes < room ? bytes : (size_t)room;
        if (fwrite(p, 1, take, w->file.fp) != take) return qh_fail_errno(QH_ESYS, "%s: write failed (disk full?)", w->file.tmp_path);
        w->current_got += take;
        p += take;
        bytes -= take;
    }
    return QH_OK;
}

static void free_writer(qh_st_writer *w)
{
    for (size_t i = 0; i < w->n; i++) free(w->tensors[i].name);
    free(w->tensors);
    cJSON_Delete(w->header);
    cJSON_Delete(w->meta);
    free(w);
}

int qh_st_writer_commit(qh_st_writer *w)
{
    int rc = w->header_written ? QH_OK : write_header(w);
    while (!rc && w->current < w->n && w->current_got == w->tensors[w->current].bytes) w->current++, w->current_got = 0;
    if (!rc && w->current < w->n)
        rc = qh_fail(QH_ESYS, "%s: tensor '%s' is missing data", w->file.path, w->tensors[w->current].name);
    if (rc) {
        qh_atomic_abort(&w->file);
    } else {
        rc = qh_atomic_commit(&w->file);
    }
    free_writer(w);
    return rc;
}

void qh_st_writer_abort(qh_st_writer *w)
{
    if (!w) return;
    qh_atomic_abort(&w->file);
    free_writer(w);
}
