/* Recovery at start: every stored batch comes back. Ended ones as summaries (their items
 * stay in the store); unfinished ones whole, with their recorded results, and run again
 * from where they stopped. Items that were running at the crash have no result: they run
 * again, with the same Idempotency-Key, so upstreams can deduplicate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pbtime.h"
#include "recover.h"

typedef struct load_ctx {
    app *a;
    char *err;
    size_t errlen;
    int failed;
    uint32_t batches, resumed, items_left;
} load_ctx;

static int target_index(const config *cfg, const Batch__V1__Operation *op)
{
    if (op->target[0] == '\0')
        return 0;
    for (size_t i = 0; i < cfg->n_targets; i++)
        if (strcmp(cfg->targets[i].name, op->target) == 0)
            return (int)i;
    return ITEM_TARGET_GONE;
}

static int cmp_seq(const void *x, const void *y)
{
    const store_result *a = x, *b = y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Fills an unfinished batch's items from the stored operations and results. */
static int fill_items(load_ctx *ctx, batch *b, const store_loaded *l)
{
    const config *cfg = ctx->a->cfg;
    if (l->n_ops != b->total) {
        snprintf(ctx->err, ctx->errlen, "batch %s: %u operations stored for %u items", b->id, l->n_ops, b->total);
        return -1;
    }
    for (uint32_t i = 0; i < b->total; i++) {
        item *it = &b->items[i];
        Batch__V1__Operation *op = batch__v1__operation__unpack(NULL, l->op_lens[i], l->ops[i]);
        if (op == NULL || (it->op = malloc(l->op_lens[i] ? l->op_lens[i] : 1)) == NULL) {
            if (op)
                batch__v1__operation__free_unpacked(op, NULL);
            snprintf(ctx->err, ctx->errlen, "batch %s: operation %u cannot be read back", b->id, i);
            return -1;
        }
        memcpy(it->op, l->ops[i], l->op_lens[i]);
        it->op_len = l->op_lens[i];
        int t = target_index(cfg, op);
        if (t == ITEM_TARGET_GONE)
            log_warn("batch %s item %u: target \"%s\" is no longer configured; the item will fail", b->id, i,
                     op->target);
        it->target = (uint8_t)t;
        it->has_key = op->idempotency_key[0] != '\0';
        batch__v1__operation__free_unpacked(op, NULL);
    }
    /* Results are durable in sequence order, so they are 1..n; sorting keeps that true
     * even if an older version wrote them otherwise, and renumbering closes any gap. */
    qsort(l->results, l->n_results, sizeof *l->results, cmp_seq);
    for (size_t k = 0; k < l->n_results; k++) {
        store_result *r = &l->results[k];
        if (r->index >= b->total || b->items[r->index].outcome) {
            grpc_slice_unref(r->result);
            r->result = grpc_empty_slice();
            continue;
        }
        if (r->seq != b->next_seq + 1)
            log_warn("batch %s: result sequence %u follows %lu; renumbered", b->id, r->seq,
                     (unsigned long)b->next_seq);
        batch_item_finish(b, r->index, r->state, r->result);
        r->result = grpc_empty_slice(); /* the item took it */
        batch_item_record_next(b);
    }
    return 0;
}

static int on_loaded(void *arg, const store_loaded *l)
{
    load_ctx *ctx = arg;
    app *a = ctx->a;
    batch *b = batch_from_snapshot(l->snapshot, !l->ended);
    int rc = -1;
    if (b == NULL) {
        snprintf(ctx->err, ctx->errlen, "a stored batch summary cannot be read back");
        goto done;
    }
    memcpy(b->fingerprint, l->fingerprint, sizeof b->fingerprint);
    if (!l->ended) {
        /* Counts come from the results, not from the (possibly older) summary. */
        b->n_pending = b->total;
        b->n_running = b->n_succeeded = b->n_failed = b->n_cancelled = 0;
        b->last_sequence = b->next_seq = 0;
        if (fill_items(ctx, b, l) < 0) {
            batch_free(b);
            b = NULL;
            goto done;
        }
        ctx->resumed++;
        ctx->items_left += b->total - (uint32_t)b->last_sequence;
    }
    if (batch_find(&a->reg, b->id)) {
        snprintf(ctx->err, ctx->errlen, "batch %s is stored twice", b->id);
        batch_free(b);
        goto done;
    }
    app_register_batch(a, b);
    ctx->batches++;
    rc = 0;
done:
    for (size_t k = 0; k < l->n_results; k++) /* what nobody took */
        grpc_slice_unref(l->results[k].result);
    if (rc < 0)
        ctx->failed = 1;
    return rc;
}

static int on_key(void *arg, const store_key *k)
{
    app *a = arg;
    return app_remember_key(a, k->key, k->batch_id, k->index, k->created_ns) < 0 ? -1 : 0;
}

int recover_load(app *a, char *err, size_t errlen)
{
    load_ctx ctx = {a, err, errlen, 0, 0, 0, 0};
    store_err e = a->store->ops->load(a->store, on_loaded, &ctx, err, errlen);
    if (e != STORE_OK || ctx.failed)
        return -1;
    int64_t cutoff = pbtime_wall_ns() - a->cfg->idempotency_ttl_ns;
    if (a->store->ops->load_keys(a->store, cutoff, on_key, a, err, errlen) != STORE_OK)
        return -1;
    if (ctx.batches)
        log_info("recovered %u batches from the store: %u unfinished with %u items to run", ctx.batches,
                 ctx.resumed, ctx.items_left);
    return 0;
}

void recover_resume(app *a)
{
    /* Oldest first (the registry lists newest first), so they resume in submission order. */
    for (list_node *pos = a->reg.all.prev; pos != &a->reg.all; pos = pos->prev) {
        batch *b = container_of(pos, batch, all_link);
        if (b->items && !batch_state_terminal(b->state))
            exec_run(a->exec, b);
    }
}
