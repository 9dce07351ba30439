/* Batch and item state, the registry of batches by id, and their protobuf views. */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "pbgrpc.h"
#include "pbtime.h"

/* ---- ids ------------------------------------------------------------------------ */

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* ULIDs sort by creation time as strings, so "newest first" paging needs no extra index.
 * Within one millisecond the random part is incremented, keeping the order strict. */
static void make_id(batch_registry *r, char out[BATCH_ID_LEN + 1])
{
    uint64_t ms = (uint64_t)(pbtime_wall_ns() / PBTIME_NS_PER_MS);
    uint8_t rnd[10];
    if (ms <= r->id_last_ms) {
        ms = r->id_last_ms;
        memcpy(rnd, r->id_last_rand, sizeof rnd);
        for (int i = 9; i >= 0 && ++rnd[i] == 0; i--)
            ;
    } else if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        /* getrandom on Linux only fails before the entropy pool is ready; a time-derived
         * value keeps ids unique within this process, which is what matters here. */
        uint64_t t = (uint64_t)pbtime_mono_ns();
        memcpy(rnd, &t, 8);
        rnd[8] = rnd[9] = 0;
    }
    r->id_last_ms = ms;
    memcpy(r->id_last_rand, rnd, sizeof rnd);

    uint8_t bytes[16];
    for (int i = 0; i < 6; i++)
        bytes[i] = (uint8_t)(ms >> (8 * (5 - i)));
    memcpy(bytes + 6, rnd, 10);
    /* 128 bits as 26 base32 digits, most significant first (the first digit holds 3 bits). */
    for (int i = 0; i < BATCH_ID_LEN; i++) {
        int bit = 5 * i - 2; /* first bit of this digit, counted from the top; 130 - 128 = 2 pad */
        unsigned v = 0;
        for (int k = 0; k < 5; k++) {
            int pos = bit + k; /* negative: the two padding bits */
            v <<= 1;
            if (pos >= 0)
                v |= (bytes[pos / 8] >> (7 - pos % 8)) & 1;
        }
        out[i] = crockford[v];
    }
    out[BATCH_ID_LEN] = '\0';
}

/* ---- registry ------------------------------------------------------------------- */

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

int batch_registry_init(batch_registry *r)
{
    memset(r, 0, sizeof *r);
    r->n_buckets = 1024;
    r->buckets = calloc(r->n_buckets, sizeof *r->buckets);
    list_init(&r->all);
    return r->buckets ? 0 : -1;
}

static void grow(batch_registry *r)
{
    size_t n = r->n_buckets * 2;
    batch **nb = calloc(n, sizeof *nb);
    if (nb == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < r->n_buckets; i++) {
        for (batch *b = r->buckets[i], *next; b; b = next) {
            next = b->hash_next;
            size_t k = hash_id(b->id) & (n - 1);
            b->hash_next = nb[k];
            nb[k] = b;
        }
    }
    free(r->buckets);
    r->buckets = nb;
    r->n_buckets = n;
}

void batch_register(batch_registry *r, batch *b)
{
    if (r->count >= r->n_buckets * 2)
        grow(r);
    size_t k = hash_id(b->id) & (r->n_buckets - 1);
    b->hash_next = r->buckets[k];
    r->buckets[k] = b;
    r->count++;
    /* Newest first; recovered batches may be older than some already present. */
    list_node *pos = r->all.next;
    while (pos != &r->all && strcmp(container_of(pos, batch, all_link)->id, b->id) > 0)
        pos = pos->next;
    list_insert_before(pos, &b->all_link);
}

batch *batch_find(const batch_registry *r, const char *id)
{
    size_t k = hash_id(id) & (r->n_buckets - 1);
    for (batch *b = r->buckets[k]; b; b = b->hash_next)
        if (strcmp(b->id, id) == 0)
            return b;
    return NULL;
}

static void unregister(batch_registry *r, batch *b)
{
    size_t k = hash_id(b->id) & (r->n_buckets - 1);
    for (batch **pp = &r->buckets[k]; *pp; pp = &(*pp)->hash_next) {
        if (*pp == b) {
            *pp = b->hash_next;
            r->count--;
            break;
        }
    }
    list_remove(&b->all_link);
}

/* An empty batch shell; with_items allocates n PENDING items. */
static batch *alloc_batch(uint32_t n, int with_items)
{
    batch *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    if (with_items) {
        b->items = calloc(n ? n : 1, sizeof *b->items);
        b->by_seq = calloc(n ? n : 1, sizeof *b->by_seq);
        if (b->items == NULL || b->by_seq == NULL) {
            free(b->items);
            free(b->by_seq);
            free(b);
            return NULL;
        }
        for (uint32_t i = 0; i < n; i++) {
            b->items[i].state = BATCH__V1__ITEM_STATE__ITEM_STATE_PENDING;
            b->items[i].result = grpc_empty_slice();
        }
    }
    b->state = BATCH__V1__BATCH_STATE__BATCH_STATE_PENDING;
    b->total = n;
    b->n_pending = n;
    list_init(&b->retry_ready);
    list_init(&b->run_link);
    list_init(&b->observers);
    list_init(&b->all_link);
    return b;
}

batch *batch_new(batch_registry *r, uint32_t n)
{
    batch *b = alloc_batch(n, 1);
    if (b == NULL)
        return NULL;
    make_id(r, b->id);
    b->create_ns = pbtime_wall_ns();
    return b;
}

batch *batch_from_snapshot(grpc_slice snapshot, int with_items)
{
    Batch__V1__Batch *m = batch__v1__batch__unpack(NULL, GRPC_SLICE_LENGTH(snapshot),
                                                   GRPC_SLICE_START_PTR(snapshot));
    if (m == NULL || strlen(m->id) != BATCH_ID_LEN || m->counts == NULL || m->options == NULL) {
        if (m)
            batch__v1__batch__free_unpacked(m, NULL);
        return NULL;
    }
    batch *b = alloc_batch(m->counts->total, with_items);
    if (b == NULL)
        goto done;
    memcpy(b->id, m->id, BATCH_ID_LEN + 1);
    b->state = m->state;
    b->options = m->options; /* taken over: detached from m before m is freed */
    m->options = NULL;
    if (m->request_id[0])
        b->request_id = strdup(m->request_id);
    b->create_ns = m->create_time ? pbtime_timestamp_ns(m->create_time) : 0;
    b->start_ns = m->start_time ? pbtime_timestamp_ns(m->start_time) : 0;
    b->end_ns = m->end_time ? pbtime_timestamp_ns(m->end_time) : 0;
    if (m->error) {
        b->error_code = m->error->code;
        b->error_message = strdup(m->error->message);
    }
    if (!with_items) { /* a summary keeps the counts it was stored with */
        b->n_pending = m->counts->pending;
        b->n_running = m->counts->running;
        b->n_succeeded = m->counts->succeeded;
        b->n_failed = m->counts->failed;
        b->n_cancelled = m->counts->cancelled;
        b->last_sequence = b->next_seq = m->last_sequence;
    }
done:
    batch__v1__batch__free_unpacked(m, NULL);
    return b;
}

void batch_free(batch *b)
{
    if (b == NULL)
        return;
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &b->observers) {
        batch_observer *o = container_of(pos, batch_observer, link);
        list_remove(&o->link);
        if (o->freed)
            o->freed(o, b);
    }
    batch_evict(b);
    if (b->snapshot_valid)
        grpc_slice_unref(b->snapshot);
    if (b->options)
        batch__v1__batch_options__free_unpacked(b->options, NULL);
    free(b->request_id);
    free(b->error_message);
    free(b);
}

void batch_release(batch_registry *r, batch *b)
{
    unregister(r, b);
    if (b->refs == 0)
        batch_free(b);
}

void batch_unref(batch *b)
{
    if (--b->refs == 0 && !list_linked(&b->all_link))
        batch_free(b);
}

void batch_registry_free(batch_registry *r)
{
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &r->all) {
        batch *b = container_of(pos, batch, all_link);
        list_remove(&b->all_link);
        b->refs = 0;
        batch_free(b);
    }
    free(r->buckets);
    memset(r, 0, sizeof *r);
}

/* ---- state ---------------------------------------------------------------------- */

int batch_state_terminal(Batch__V1__BatchState s)
{
    return s == BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED ||
           s == BATCH__V1__BATCH_STATE__BATCH_STATE_COMPLETED_WITH_FAILURES ||
           s == BATCH__V1__BATCH_STATE__BATCH_STATE_CANCELLED ||
           s == BATCH__V1__BATCH_STATE__BATCH_STATE_FAILED;
}

int batch_item_state_ended(int s)
{
    return s == BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED ||
           s == BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED ||
           s == BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED;
}

static void changed(batch *b)
{
    if (b->snapshot_valid) {
        grpc_slice_unref(b->snapshot);
        b->snapshot_valid = 0;
    }
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &b->observers) {
        batch_observer *o = container_of(pos, batch_observer, link);
        if (o->changed)
            o->changed(o, b);
    }
}

void batch_start(batch *b)
{
    if (b->state != BATCH__V1__BATCH_STATE__BATCH_STATE_PENDING)
        return;
    b->state = BATCH__V1__BATCH_STATE__BATCH_STATE_RUNNING;
    b->start_ns = pbtime_wall_ns();
    changed(b);
}

void batch_item_running(batch *b, uint32_t idx)
{
    item *it = &b->items[idx];
    if (it->state == BATCH__V1__ITEM_STATE__ITEM_STATE_PENDING) {
        b->n_pending--;
        b->n_running++;
        it->state = BATCH__V1__ITEM_STATE__ITEM_STATE_RUNNING;
        changed(b);
    }
}

void batch_item_waiting(batch *b, uint32_t idx)
{
    item *it = &b->items[idx];
    if (it->state == BATCH__V1__ITEM_STATE__ITEM_STATE_RUNNING) {
        b->n_running--;
        b->n_pending++;
        it->state = BATCH__V1__ITEM_STATE__ITEM_STATE_PENDING;
        changed(b);
    }
}

void batch_evict(batch *b)
{
    if (b->items == NULL)
        return;
    for (uint32_t i = 0; i < b->total; i++) {
        free(b->items[i].op);
        grpc_slice_unref(b->items[i].result);
    }
    free(b->items);
    free(b->by_seq);
    b->items = NULL;
    b->by_seq = NULL;
}

void batch_item_finish(batch *b, uint32_t idx, int state, grpc_slice result)
{
    item *it = &b->items[idx];
    if (it->outcome) { /* finished twice: keep the first result */
        grpc_slice_unref(result);
        return;
    }
    it->outcome = (uint8_t)state;
    grpc_slice_unref(it->result);
    it->result = result;
    it->seq = (uint32_t)++b->next_seq;
    b->by_seq[it->seq - 1] = idx;
}

int batch_all_finished(const batch *b) { return b->next_seq == b->total; }

uint32_t batch_item_record_next(batch *b)
{
    uint32_t idx = b->by_seq[b->last_sequence];
    item *it = &b->items[idx];
    if (it->state == BATCH__V1__ITEM_STATE__ITEM_STATE_RUNNING)
        b->n_running--;
    else
        b->n_pending--;
    switch (it->outcome) {
    case BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED: b->n_succeeded++; break;
    case BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED: b->n_failed++; break;
    default: b->n_cancelled++; break;
    }
    it->state = it->outcome;
    b->last_sequence++;

    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &b->observers) {
        batch_observer *o = container_of(pos, batch_observer, link);
        if (o->item_ended)
            o->item_ended(o, b, idx);
    }
    changed(b);
    return idx;
}

void batch_end(batch *b, Batch__V1__BatchState state, int code, const char *why)
{
    if (batch_state_terminal(b->state))
        return;
    b->state = state;
    b->end_ns = pbtime_wall_ns();
    if (b->start_ns == 0)
        b->start_ns = b->end_ns;
    if (code && why) {
        b->error_code = code;
        free(b->error_message);
        b->error_message = strdup(why);
    }
    changed(b);
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &b->observers) {
        batch_observer *o = container_of(pos, batch_observer, link);
        if (o->ended)
            o->ended(o, b);
    }
}

Batch__V1__BatchState batch_outcome(const batch *b)
{
    return b->n_succeeded == b->total ? BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED
                                      : BATCH__V1__BATCH_STATE__BATCH_STATE_COMPLETED_WITH_FAILURES;
}

double batch_progress(const batch *b)
{
    return b->total ? (double)b->last_sequence / b->total : 1.0;
}

void batch_observe(batch *b, batch_observer *o) { list_push_back(&b->observers, &o->link); }

void batch_unobserve(batch_observer *o)
{
    if (list_linked(&o->link))
        list_remove(&o->link);
}

/* ---- protobuf views ------------------------------------------------------------------ */

void batch_to_pb(const batch *b, batch_pb *pb)
{
    batch__v1__batch__init(&pb->msg);
    batch__v1__counts__init(&pb->counts);
    pb->msg.id = (char *)b->id;
    pb->msg.state = b->state;
    pb->counts.total = b->total;
    pb->counts.pending = b->n_pending;
    pb->counts.running = b->n_running;
    pb->counts.succeeded = b->n_succeeded;
    pb->counts.failed = b->n_failed;
    pb->counts.cancelled = b->n_cancelled;
    pb->msg.counts = &pb->counts;
    pb->msg.progress = batch_progress(b);
    pbtime_timestamp_set(&pb->create_time, b->create_ns);
    pb->msg.create_time = &pb->create_time;
    if (b->start_ns) {
        pbtime_timestamp_set(&pb->start_time, b->start_ns);
        pb->msg.start_time = &pb->start_time;
    }
    if (b->end_ns) {
        pbtime_timestamp_set(&pb->end_time, b->end_ns);
        pb->msg.end_time = &pb->end_time;
    }
    pb->msg.options = b->options;
    pb->msg.last_sequence = b->last_sequence;
    if (b->request_id)
        pb->msg.request_id = b->request_id;
    if (b->error_code) {
        google__rpc__status__init(&pb->error);
        pb->error.code = b->error_code;
        pb->error.message = b->error_message ? b->error_message : "";
        pb->msg.error = &pb->error;
    }
}

grpc_slice batch_snapshot(batch *b)
{
    if (!b->snapshot_valid) {
        batch_pb pb;
        batch_to_pb(b, &pb);
        size_t len = protobuf_c_message_get_packed_size(&pb.msg.base);
        b->snapshot = grpc_slice_malloc(len);
        protobuf_c_message_pack(&pb.msg.base, GRPC_SLICE_START_PTR(b->snapshot));
        b->snapshot_valid = 1;
    }
    return grpc_slice_ref(b->snapshot);
}

const char *batch_item_id(const Batch__V1__Operation *op, uint32_t index, char *buf)
{
    if (op && op->id && op->id[0])
        return op->id;
    snprintf(buf, 129, "%u", index);
    return buf;
}

Batch__V1__Operation *batch_item_op(const batch *b, uint32_t idx)
{
    const item *it = &b->items[idx];
    return batch__v1__operation__unpack(NULL, it->op_len, it->op);
}
