#include "length_order.h"

#include <stdlib.h>

typedef struct {
    int64_t len, index;
} len_index;

static int cmp(const void *a, const void *b)
{
    const len_index *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

int64_t *qh_order_by_length(const int64_t *offsets, int64_t n)
{
    len_index *tmp = malloc(sizeof *tmp * (size_t)(n ? n : 1));
    int64_t *order = malloc(sizeof *order * (size_t)(n ? n : 1));
    if (!tmp || !order) {
        free(tmp);
        free(order);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) tmp[i] = (len_index){offsets[i + 1] - offsets[i], i};
    qsort(tmp, (size_t)n, sizeof *tmp, cmp);
    for (int64_t i = 0; i < n; i++) order[i] = tmp[i].index;
    free(tmp);
    return order;
}
