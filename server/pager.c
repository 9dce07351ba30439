/* Store paging for streaming calls (see pager.h). */
#include "pager.h"

#include <stdlib.h>
#include <string.h>

static void drop_page(pager *p)
{
    for (size_t i = p->pos; i < p->n; i++)
        grpc_slice_unref(p->v[i].result);
    free(p->v);
    p->v = NULL;
    p->n = p->pos = 0;
}

static void on_page(void *arg, store_err err, store_result *v, size_t n)
{
    pager *p = arg;
    rpc_call *c = p->call;
    p->reading = 0;
    if (!rpc_call_active(c) || p->ready == NULL) { /* nobody wants it any more */
        for (size_t i = 0; i < n; i++)
            grpc_slice_unref(v[i].result);
        rpc_call_release(c);
        return;
    }
    if (err != STORE_OK) {
        for (size_t i = 0; i < n; i++)
            grpc_slice_unref(v[i].result);
        p->err = err;
        p->eof = 1;
    } else {
        drop_page(p);
        if (n && (p->v = malloc(n * sizeof *p->v)) == NULL) {
            for (size_t i = 0; i < n; i++)
                grpc_slice_unref(v[i].result);
            p->err = STORE_ENOMEM;
            p->eof = 1;
        } else {
            memcpy(p->v, v, n * sizeof *v); /* the slice references move to us */
            p->n = n;
            p->eof = n < PAGER_PAGE;
            if (n)
                p->from = p->kind == PAGER_RESULTS_BY_SEQ ? v[n - 1].seq : v[n - 1].index + 1;
        }
    }
    p->ready(p);
    rpc_call_release(c);
}

void pager_init(pager *p, store *st, rpc_call *call, const char *batch_id, pager_kind kind, int state,
                uint32_t from, void (*ready)(pager *p))
{
    memset(p, 0, sizeof *p);
    p->st = st;
    p->call = call;
    memcpy(p->batch_id, batch_id, sizeof p->batch_id);
    p->kind = kind;
    p->state = state;
    p->from = from;
    p->ready = ready;
}

int pager_next(pager *p, store_result *out)
{
    if (p->pos < p->n) {
        *out = p->v[p->pos++];
        return 1;
    }
    if (p->eof || p->err)
        return -1;
    if (!p->reading) {
        p->reading = 1;
        rpc_call_hold(p->call);
        if (p->kind == PAGER_OPS)
            store_read_ops(p->st, p->batch_id, p->from, p->state, PAGER_PAGE, on_page, p);
        else
            store_read_results(p->st, p->batch_id, p->from, p->kind == PAGER_RESULTS_BY_SEQ, p->state,
                               PAGER_PAGE, on_page, p);
    }
    return 0;
}

void pager_clear(pager *p)
{
    drop_page(p);
    p->ready = NULL; /* a read in flight finds nobody and lets the call go */
}
