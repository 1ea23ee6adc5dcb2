#include "safetensors.h"

#include "error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Real headers are a few hundred KB (LLaMA-2-7B: ~30 KB per shard); the reference
 * implementation refuses anything past 100 MB too. */
#define MAX_HEADER_BYTES (100u << 20)

static int cmp_begin(const void *a, const void *b)
{
    const qh_st_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const qh_st_tensor *)a)->name, ((const qh_st_tensor *)b)->name);
}

/* A JSON number that is a non-negative integer exactly representable (< 2^53). */
static int json_u64(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item)) return 0;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* JSON allows an object to repeat a name and cJSON keeps every copy; which one counts would be
 * a guess, so refuse. *dup receives a repeated name of obj, or NULL when all are distinct. */
static int find_duplicate_key(const cJSON *obj, const char **dup)
{
    *dup = NULL;
    int n = cJSON_GetArraySize(obj);
    if (n < 2) return QH_OK;
    const char **keys = malloc((size_t)n * sizeof *keys);
    if (!keys) return qh_fail(QH_ESYS, "out of memory");
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) keys[k++] = it->string;
    qsort(keys, (size_t)k, sizeof *keys, cmp_str);
    for (int i = 1; i < k && !*dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) *dup = keys[i];
    free(keys);
    return QH_OK;
}

static int parse_tensor(qh_safetensors *st, const cJSON *item, qh_st_tensor *t)
{
    const char *path = st->path, *name = item->string;
    if (!cJSON_IsObject(item)) return qh_fail(QH_EINPUT, "%s: tensor '%s': entry is not an object", path, name);
    const char *dup;
    int rc = find_duplicate_key(item, &dup);
    if (rc) return rc;
    if (dup) return qh_fail(QH_EINPUT, "%s: tensor '%s': field '%s' appears twice", path, name, dup);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return qh_fail(QH_EINPUT, "%s: tensor '%s': needs dtype, shape and data_offsets", path, name);
    int dtype = qh_dtype_from_name(dt->valuestring);
    if (dtype < 0) return qh_fail(QH_EINPUT, "%s: tensor '%s': unsupported dtype '%s'", path, name, dt->valuestring);
    t->dtype = (qh_dtype)dtype;
    int nd = cJSON_GetArraySize(shape);
    if (nd > QH_ST_MAX_DIMS) return qh_fail(QH_EINPUT, "%s: tensor '%s': %d dimensions, at most %d supported", path, name, nd, QH_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_u64(cJSON_GetArrayItem(shape, i), &d))
            return qh_fail(QH_EINPUT, "%s: tensor '%s': shape entry %d is not a non-negative integer", path, name, i);
        if (d && numel > UINT64_MAX / d)
            return qh_fail(QH_EINPUT, "%s: tensor '%s': shape product overflows", path, name);
        numel *= d;
        t->shape[i] = (int64_t)d;
    }
    uint64_t es = qh_dtype_size(t->dtype);
    if (numel > UINT64_MAX / es) return qh_fail(QH_EINPUT, "%s: tensor '%s': byte size overflows", path, name);
    if (cJSON_GetArraySize(offs) != 2 || !json_u64(cJSON_GetArrayItem(offs, 0), &t->begin) ||
        !json_u64(cJSON_GetArrayItem(offs, 1), &t->end))
        return qh_fail(QH_EINPUT, "%s: tensor '%s': data_offsets must be two non-negative integers", path, name);
    if (t->begin > t->end || t->end > st->data_size)
        return qh_fail(QH_EINPUT, "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes", path,
                       name, (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)st->data_size);
    if (t->end - t->begin != numel * es)
        return qh_fail(QH_EINPUT, "%s: tensor '%s': %llu bytes, but %s shape needs %llu", path, name,
                       (unsigned long long)(t->end - t->begin), qh_dtype_name(t->dtype),
                       (unsigned long long)(numel * es));
    /* Unaligned element access is undefined in C; writers pad the header to keep data aligned. */
    if (((uintptr_t)(st->data + t->begin)) % es)
        return qh_fail(QH_EINPUT, "%s: tensor '%s': data not aligned to its %llu-byte elements", path, name,
                       (unsigned long long)es);
    t->name = strdup(name);
    if (!t->name) return qh_fail(QH_ESYS, "out of memory");
    return QH_OK;
}

static int parse_metadata(qh_safetensors *st, const cJSON *meta)
{
    if (!cJSON_IsObject(meta)) return qh_fail(QH_EINPUT, "%s: __metadata__ is not an object", st->path);
    if (st->meta_keys) return qh_fail(QH_EINPUT, "%s: __metadata__ appears twice in the header", st->path);
    const char *dup;
    int rc = find_duplicate_key(meta, &dup);
    if (rc) return rc;
    if (dup) return qh_fail(QH_EINPUT, "%s: __metadata__ key '%s' appears twice", st->path, dup);
    int n = cJSON_GetArraySize(meta);
    st->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    st->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_values) return qh_fail(QH_ESYS, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, meta)
    {
        if (!cJSON_IsString(it)) return qh_fail(QH_EINPUT, "%s: __metadata__ value '%s' is not a string", st->path, it->string);
        st->meta_keys[st->n_meta] = strdup(it->string);
        st->meta_values[st->n_meta] = strdup(it->valuestring);
        if (!st->meta_keys[st->n_meta] || !st->meta_values[st->n_meta]) return qh_fail(QH_ESYS, "out of memory");
        st->n_meta++;
    }
    return QH_OK;
}

static int parse_header(qh_safetensors *st, const char *json, size_t len)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) return qh_fail(QH_EINPUT, "%s: header is not valid JSON", st->path);
    /* Exactly one JSON value; writers pad the header with spaces (serde_json, the reference
     * parser, also skips the other JSON whitespace). Anything else after it is refused. */
    for (const char *p = end; p < json + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return qh_fail(QH_EINPUT, "%s: header has bytes after its JSON value (at header byte %zu)", st->path,
                           (size_t)(p - json));
        }
    int rc = QH_OK;
    if (!cJSON_IsObject(root)) {
        rc = qh_fail(QH_EINPUT, "%s: header is not a JSON object", st->path);
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(root);
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    if (!st->tensors) {
        rc = qh_fail(QH_ESYS, "out of memory");
        goto done;
    }
    const char *dup;
    if ((rc = find_duplicate_key(root, &dup))) goto done;
    if (dup) {
        if (strcmp(dup, "__metadata__") == 0)
            rc = qh_fail(QH_EINPUT, "%s: __metadata__ appears twice in the header", st->path);
        else rc = qh_fail(QH_EINPUT, "%s: tensor '%s' appears twice in the header", st->path, dup);
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        if (strcmp(it->string, "__metadata__") == 0) rc = parse_metadata(st, it);
        else if (!(rc = parse_tensor(st, it, &st->tensors[st->n_tensors]))) st->n_tensors++;
        if (rc) goto done;
    }
    /* Overlapping tensors would alias each other's bytes: refuse. */
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, cmp_begin);
    const qh_st_tensor *furthest = NULL; /* the non-empty tensor reaching furthest so far */
    for (size_t i = 0; i < st->n_tensors; i++) {
        const qh_st_tensor *b = &st->tensors[i];
        if (b->end == b->begin) continue; /* empty tensors own no bytes */
        if (furthest && b->begin < furthest->end) {
            rc = qh_fail(QH_EINPUT, "%s: tensors '%s' and '%s' overlap in the data section", st->path,
                         furthest->name, b->name);
            goto done;
        }
        if (!furthest || b->end > furthest->end) furthest = b;
    }
    /* Sorted by name for binary search; duplicates (legal JSON, illegal here) show up as neighbours. */
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, cmp_name);
    for (size_t i = 1; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0) {
            rc = qh_fail(QH_EINPUT, "%s: tensor '%s' appears twice in the header", st->path, st->tensors[i].name);
            goto done;
        }
done:
    cJSON_Delete(root);
    return rc;
}

int qh_st_open(const char *path, qh_safetensors **out)
{
    *out = NULL;
    qh_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return qh_fail(QH_ESYS, "out of memory");
    }
    int rc = QH_OK;
    /* O_NONBLOCK: a FIFO in place of the file must be refused below, not block open() forever.
     * The descriptor is only fstat'ed and mapped, so the flag needs no clearing. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        rc = qh_fail_errno(QH_EINPUT, "%s: cannot open", path);
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        rc = qh_fail(QH_EINPUT, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        close(fd);
        rc = qh_fail(QH_EINPUT, "%s: truncated: %llu bytes, not even a header length", path, (unsigned long long)size);
        goto fail;
    }
    st->map_size = (size_t)size;
    st->map = mmap(NULL, st->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        rc = qh_fail_errno(QH_EINPUT, "%s: cannot map", path);
        goto fail;
    }
    const uint8_t *b = st->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n > size - 8) {
        rc = qh_fail(QH_EINPUT, "%s: header length %llu runs past the end of the %llu-byte file (truncated?)", path,
                     (unsigned long long)n, (unsigned long long)size);
        goto fail;
    }
    if (n > MAX_HEADER_BYTES || n < 2) {
        rc = qh_fail(QH_EINPUT, "%s: implausible header length %llu", path, (unsigned long long)n);
        goto fail;
    }
    st->header_size = n;
    st->data = b + 8 + n;
    st->data_size = size - 8 - n;
    rc = parse_header(st, (const char *)b + 8, (size_t)n);
    if (rc) goto fail;
    *out = st;
    return QH_OK;
fail:
    qh_st_close(st);
    return rc;
}

void qh_st_close(qh_safetensors *st)
{
    if (!st) return;
    if (st->map) munmap(st->map, st->map_size);
    for (size_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->path);
    free(st);
}

const qh_st_tensor *qh_st_find(const qh_safetensors *st, const char *name)
{
    size_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const void *qh_st_data(const qh_safetensors *st, const qh_st_tensor *t) { return st->data + t->begin; }

const char *qh_st_meta(const qh_safetensors *st, const char *key)
{
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

int qh_st_view(const qh_safetensors *st, const qh_st_tensor *t, qh_tensor *out)
{
    if (t->ndim > QH_MAX_DIMS)
        return qh_fail(QH_EINPUT, "%s: tensor '%s' has %d dimensions, more than %d", st->path, t->name, t->ndim, QH_MAX_DIMS);
    *out = qh_tensor_desc(t->dtype, t->ndim, t->shape);
    out->data = (void *)(st->data + t->begin);
    out->device = QH_DEVICE_CPU;
    return QH_OK;
}
