/* Following a batch, with reconnection (see watch.h). */
#include "watch.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diag.h"
#include "output.h"
#include "pbtime.h"

#define STREAM_ENDED (-1)

/* Where following a batch stands. Every change goes through follow_to. */
typedef enum follow_state {
    FOLLOW_CONNECTING,    /* no stream has worked yet: a failure now is final */
    FOLLOW_STREAMING,     /* a stream is delivering events */
    FOLLOW_RECONNECTING,  /* the stream broke; new ones are tried with backoff */
} follow_state;

typedef struct follower {
    bctl *ctl;
    const watch_req *req;
    progress *pg;
    follow_state state;
    uint64_t last_seq;       /* the last item event passed on */
    int64_t broken_since;    /* monotonic ns, while RECONNECTING */
    double backoff;          /* the next wait, in seconds */
    unsigned seed;           /* for the jitter */
    Batch__V1__Batch *final; /* the final state, once seen */
} follower;

static void follow_to(follower *f, follow_state to, const rpcclient_status *why)
{
    if (f->state == to)
        return;
    if (to == FOLLOW_RECONNECTING) {
        f->broken_since = pbtime_mono_ns();
        f->backoff = WATCH_BACKOFF_FIRST_S;
        progress_note(f->pg, "batchctl: the stream from batchd at %s broke (%s: %s); reconnecting",
                      f->ctl->o->server, diag_code_name(why->code),
                      why->code == GRPC_STATUS_OK ? "it ended before the batch" : why->message);
    } else if (to == FOLLOW_STREAMING && f->state == FOLLOW_RECONNECTING) {
        progress_note(f->pg, "batchctl: reconnected to batchd at %s; resuming after item %llu", f->ctl->o->server,
                      (unsigned long long)f->last_seq);
    }
    f->state = to;
}

/* Opens one stream and reads it until it ends, Ctrl-C, or the callback stops. Returns
 * STREAM_ENDED when the stream ended (its status in *st), or a watch_end. */
static int read_stream(follower *f, rpcclient_status *st)
{
    bctl *ctl = f->ctl;
    const watch_req *req = f->req;
    Batch__V1__WatchBatchRequest wr = BATCH__V1__WATCH_BATCH_REQUEST__INIT;
    Google__Protobuf__Duration interval = GOOGLE__PROTOBUF__DURATION__INIT;
    interval.nanos = WATCH_MIN_INTERVAL_NS;
    wr.batch_id = (char *)req->batch_id;
    wr.include_items = req->include_items;
    wr.after_sequence = req->include_items ? f->last_seq : 0;
    wr.min_interval = &interval;
    rpcclient_stream *s = rpcclient_stream_open(bctl_rpc(ctl), BCTL_M_WATCH, &wr.base, 0);
    int rc = STREAM_ENDED;
    for (;;) {
        ProtobufCMessage *m = NULL;
        int r = rpcclient_stream_next(s, &batch__v1__batch_event__descriptor, &m, WATCH_POLL_S);
        if (bctl_interrupted(ctl)) {
            if (m)
                protobuf_c_message_free_unpacked(m, NULL);
            rpcclient_stream_cancel(s);
            rc = WATCH_INTERRUPTED;
            break;
        }
        if (r == -2) {
            progress_tick(f->pg, pbtime_mono_ns());
            continue;
        }
        if (r == -1) {
            progress_clear(f->pg);
            fprintf(ctl->err, "batchctl: batchd sent an event that cannot be decoded\n");
            rc = WATCH_ERROR;
            break;
        }
        if (r == 0)
            break;
        Batch__V1__BatchEvent *ev = (Batch__V1__BatchEvent *)m;
        follow_to(f, FOLLOW_STREAMING, NULL);
        int skip = 0;
        if (ev->item) {
            uint64_t seq = ev->item->sequence ? ev->item->sequence : ev->sequence;
            skip = seq <= f->last_seq; /* replayed: already passed on */
            if (!skip)
                f->last_seq = seq;
        }
        if (ev->batch)
            progress_update(f->pg, ev->batch, pbtime_mono_ns());
        if (!skip && req->on_event && req->on_event(req->arg, ev) < 0) {
            batch__v1__batch_event__free_unpacked(ev, NULL);
            rpcclient_stream_cancel(s);
            rc = WATCH_ERROR;
            break;
        }
        if (ev->batch && bctl_batch_ended(ev->batch->state)) {
            if (f->final)
                batch__v1__batch__free_unpacked(f->final, NULL);
            f->final = ev->batch;
            ev->batch = NULL;
        }
        batch__v1__batch_event__free_unpacked(ev, NULL);
    }
    rpcclient_stream_finish(s, st);
    return rc;
}

static int transient(const rpcclient_status *st)
{
    char reason[64];
    /* OK before the final event: the stream was cut short. CANCELLED that batchctl did not
     * ask for comes from the other side: a server shutting down cancels its calls. */
    if (st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_UNAVAILABLE || st->code == GRPC_STATUS_CANCELLED)
        return 1;
    /* The server's watcher limit: it says when to come back. */
    return st->code == GRPC_STATUS_RESOURCE_EXHAUSTED &&
           strcmp(diag_reason(st, reason, sizeof reason), "TOO_MANY_WATCHERS") == 0;
}

/* After a stream ended without the final event: WATCH_ERROR when it is time to stop (the
 * reason printed), WATCH_INTERRUPTED, or STREAM_ENDED to try again after the backoff. */
static int after_break(follower *f, const rpcclient_status *st)
{
    bctl *ctl = f->ctl;
    if (f->state == FOLLOW_STREAMING && transient(st))
        follow_to(f, FOLLOW_RECONNECTING, st);
    if (f->state == FOLLOW_CONNECTING || !transient(st)) {
        progress_clear(f->pg);
        if (st->code == GRPC_STATUS_NOT_FOUND && f->state != FOLLOW_CONNECTING)
            fprintf(ctl->err, "batchctl: batch %s is gone: batchd at %s no longer knows it (it restarted "
                              "without a durable store, or removed the batch)\n",
                    f->req->batch_id, ctl->o->server);
        else
            diag_rpc(ctl->err, ctl->o->server, st, NULL);
        return WATCH_ERROR;
    }
    int64_t now = pbtime_mono_ns();
    double left = (double)(f->broken_since + ctl->o->reconnect_timeout_ns - now) / 1e9;
    if (left <= 0) {
        char waited[32], hint[160];
        out_duration(waited, sizeof waited, now - f->broken_since);
        progress_clear(f->pg);
        fprintf(ctl->err, "batchctl: gave up reconnecting to batchd at %s after %s (%s: %s)\n", ctl->o->server,
                waited, diag_code_name(st->code), st->message);
        fprintf(ctl->err, "batchctl: batch %s may still be running; follow it later with: batchctl watch %s%s\n",
                f->req->batch_id, f->req->batch_id, bctl_server_hint(ctl, hint, sizeof hint));
        return WATCH_ERROR;
    }
    double wait = f->backoff * (0.8 + 0.4 * (double)rand_r(&f->seed) / RAND_MAX);
    if (bctl_sleep(ctl, wait < left ? wait : left) < 0)
        return WATCH_INTERRUPTED;
    f->backoff = f->backoff * 2 > WATCH_BACKOFF_MAX_S ? WATCH_BACKOFF_MAX_S : f->backoff * 2;
    return STREAM_ENDED;
}

watch_end watch_follow(bctl *ctl, const watch_req *req, progress *pg, Batch__V1__Batch **final)
{
    follower f = {.ctl = ctl, .req = req, .pg = pg, .state = FOLLOW_CONNECTING,
                  .seed = (unsigned)pbtime_mono_ns() ^ (unsigned)getpid()};
    int rc;
    do {
        rpcclient_status st = {0};
        rc = read_stream(&f, &st);
        /* The last terminal event is the final one only if the stream then ended with OK: a
         * reconnect to an ended batch gets a terminal snapshot with replayed items to come. */
        if (rc == STREAM_ENDED && f.final && st.code == GRPC_STATUS_OK)
            rc = WATCH_ENDED;
        else if (rc == STREAM_ENDED)
            rc = after_break(&f, &st);
        rpcclient_status_clear(&st);
    } while (rc == STREAM_ENDED);
    if (rc != WATCH_ENDED && f.final) {
        batch__v1__batch__free_unpacked(f.final, NULL);
        f.final = NULL;
    }
    *final = f.final;
    return (watch_end)rc;
}

int watch_interrupted(bctl *ctl, progress *pg, const char *id)
{
    char hint[160];
    progress_clear(pg);
    bctl_server_hint(ctl, hint, sizeof hint);
    if (!ctl->o->cancel_on_interrupt) {
        fprintf(ctl->err,
                "batchctl: interrupted; batch %s goes on running on batchd\n"
                "  follow it:    batchctl watch %s%s\n"
                "  its results:  batchctl results %s%s\n"
                "  cancel it:    batchctl cancel %s%s\n",
                id, id, hint, id, hint, id, hint);
        return BCTL_EXIT_INTERRUPTED;
    }
    Batch__V1__CancelBatchRequest req = BATCH__V1__CANCEL_BATCH_REQUEST__INIT;
    req.batch_id = (char *)id;
    Batch__V1__Batch *b = (Batch__V1__Batch *)bctl_call(ctl, BCTL_M_CANCEL, &req.base, &batch__v1__batch__descriptor,
                                                        NULL);
    if (b) {
        const Batch__V1__Counts *c = b->counts;
        fprintf(ctl->err, "batchctl: interrupted; batch %s %s: %u succeeded, %u failed, %u cancelled of %u\n", id,
                out_batch_state(b->state), c ? c->succeeded : 0, c ? c->failed : 0, c ? c->cancelled : 0,
                c ? c->total : 0);
        batch__v1__batch__free_unpacked(b, NULL);
    } else {
        fprintf(ctl->err, "batchctl: interrupted; batch %s could not be cancelled: cancel it with: "
                          "batchctl cancel %s%s\n", id, id, hint);
    }
    return BCTL_EXIT_INTERRUPTED;
}

int watch_exit_status(int state)
{
    return state == BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED ? BCTL_EXIT_OK : BCTL_EXIT_ITEMS_FAILED;
}
