/* Results read back from the store, a page at a time, for a streaming call: the batch's
 * items left memory (or never came back after a restart), and the call sends them one by
 * one without ever holding more than a page. One read in flight per pager. */
#ifndef BATCHD_PAGER_H
#define BATCHD_PAGER_H

#include "rpc.h"
#include "store.h"

#define PAGER_PAGE 256

typedef struct pager pager;

/* What is read, and in which order. */
typedef enum pager_kind {
    PAGER_RESULTS,                /* results in index order from `from` */
    PAGER_RESULTS_BY_SEQ,         /* results in sequence order after `from` */
    PAGER_OPS,                    /* operations in index order from `from` (store_read_ops) */
} pager_kind;

struct pager {
    store *st;
    rpc_call *call;               /* held while a read is in flight */
    char batch_id[BATCH_ID_LEN + 1];
    pager_kind kind;
    int state;                    /* 0: all states */
    uint32_t from;
    store_result *v;              /* the current page; v[pos..n) not yet handed out */
    size_t n, pos;
    int eof;                      /* the last page was short: nothing more to read */
    int reading;
    store_err err;                /* a read failed */
    void (*ready)(pager *p);      /* a page arrived (or failed) and the call is still active */
};

void pager_init(pager *p, store *st, rpc_call *call, const char *batch_id, pager_kind kind, int state,
                uint32_t from, void (*ready)(pager *p));
/* 1: *out is the next result (the caller owns out->result); 0: a read is in flight and
 * ready() follows; -1: no more results (p->err says whether it failed). */
int pager_next(pager *p, store_result *out);
/* Drops what is buffered. A read in flight keeps the call held until it returns. */
void pager_clear(pager *p);

#endif
