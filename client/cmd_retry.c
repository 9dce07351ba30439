/* retry: submits the failed and cancelled operations of an ended batch again, as a new batch
 * labelled retry-of=ID with the original's options, then follows it as submit does.
 *
 * The operations come from batchd (ListOperations), two streams read side by side, one of
 * the FAILED and one of the CANCELLED items, each in input order, merged by index: the new
 * batch keeps the original's order, and each operation is packed into the request as soon
 * as it arrives (the builder of submit.h), so no batch is ever held as messages.
 *
 * Each operation is sent as its first attempt was: with its own idempotency key, or else
 * with the key batchd derived for it, "<batch id>/<item id>", where the item id is the
 * operation's id or, when it has none, its index in decimal. An operation without an id is
 * given that index as its id, so that its results in the new batch name the same item and
 * the ids stay unique (batchd refuses an id that another item's index would take). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "diag.h"
#include "output.h"
#include "pbgrpc.h"
#include "submit.h"

/* One ListOperations stream, read one record ahead for the merge. */
typedef struct op_stream {
    rpcclient_stream *s;                /* NULL once finished */
    Batch__V1__OperationRecord *head;   /* its next record; NULL after the last */
    size_t taken;                       /* records merged from it */
} op_stream;

/* Replaces os->head by the next record of the stream, NULL at its end. 0, or -1 after
 * printing why the stream failed. */
static int ops_advance(bctl *ctl, op_stream *os)
{
    if (os->head) {
        batch__v1__operation_record__free_unpacked(os->head, NULL);
        os->head = NULL;
    }
    if (os->s == NULL)
        return 0;
    ProtobufCMessage *m = NULL;
    /* No deadline for the whole stream, but each record must come within --timeout. */
    int r = rpcclient_stream_next(os->s, &batch__v1__operation_record__descriptor, &m, bctl_timeout_s(ctl));
    if (r == 1) {
        os->head = (Batch__V1__OperationRecord *)m;
        return 0;
    }
    if (r != 0)
        rpcclient_stream_cancel(os->s);
    rpcclient_status st = {0};
    grpc_status_code code = rpcclient_stream_finish(os->s, &st);
    os->s = NULL;
    int rc = -1;
    if (r == -2)
        fprintf(ctl->err, "batchctl: batchd at %s sent no operation for %.0fs (--timeout)\n", ctl->o->server,
                bctl_timeout_s(ctl));
    else if (r == -1)
        fprintf(ctl->err, "batchctl: batchd sent an operation that cannot be decoded\n");
    else if (code == GRPC_STATUS_UNIMPLEMENTED)
        fprintf(ctl->err, "batchctl: batchd at %s cannot list a batch's operations (ListOperations: "
                          "UNIMPLEMENTED): it is older than this batchctl; upgrade it to retry\n", ctl->o->server);
    else if (code != GRPC_STATUS_OK)
        diag_rpc(ctl->err, ctl->o->server, &st, NULL);
    else
        rc = 0;
    rpcclient_status_clear(&st);
    return rc;
}

/* Opens the stream of the operations of batch id whose items ended in state, and reads
 * its first record. 0, or -1 after printing why. */
static int ops_open(bctl *ctl, op_stream *os, const char *id, Batch__V1__ItemState state)
{
    Batch__V1__ListOperationsRequest req = BATCH__V1__LIST_OPERATIONS_REQUEST__INIT;
    req.batch_id = (char *)id;
    req.state = state;
    os->s = rpcclient_stream_open(bctl_rpc(ctl), BCTL_M_OPERATIONS, &req.base, 0);
    return ops_advance(ctl, os);
}

static void ops_close(op_stream *os)
{
    if (os->head)
        batch__v1__operation_record__free_unpacked(os->head, NULL);
    if (os->s) { /* stopped early: end the call */
        rpcclient_stream_cancel(os->s);
        rpcclient_stream_finish(os->s, NULL);
    }
    memset(os, 0, sizeof *os);
}

/* Packs the operation of rec into b as it is to be sent again (see the top of the file).
 * 0, or -1 on ENOMEM. */
static int add_operation(builder *b, const Batch__V1__OperationRecord *rec, const char *orig_id)
{
    Batch__V1__Operation *op = rec->operation;
    if (op->id[0] == '\0' && msg_set_string(&op->id, "%" PRIu32, rec->index) < 0)
        return -1;
    if (op->idempotency_key[0] == '\0' && msg_set_string(&op->idempotency_key, "%s/%s", orig_id, op->id) < 0)
        return -1;
    return builder_pack(b, op, 0);
}

/* Reads the failed and the cancelled operations of batch id into b, in input order. 0, or
 * the exit status to end with (the reason printed). */
static int read_operations(bctl *ctl, builder *b, const char *id, size_t *n_failed, size_t *n_cancelled)
{
    op_stream failed = {0}, cancelled = {0};
    int rc = BCTL_EXIT_ERROR;
    if (ops_open(ctl, &failed, id, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED) < 0 ||
        ops_open(ctl, &cancelled, id, BATCH__V1__ITEM_STATE__ITEM_STATE_CANCELLED) < 0)
        goto done;
    int64_t last = -1;
    while (failed.head || cancelled.head) {
        if (bctl_interrupted(ctl)) {
            fprintf(ctl->err, "batchctl: interrupted; nothing was submitted\n");
            rc = BCTL_EXIT_INTERRUPTED;
            goto done;
        }
        op_stream *os = cancelled.head == NULL || (failed.head && failed.head->index < cancelled.head->index)
                            ? &failed
                            : &cancelled;
        const Batch__V1__OperationRecord *rec = os->head;
        if ((int64_t)rec->index <= last || rec->operation == NULL) {
            fprintf(ctl->err, "batchctl: batchd sent operation #%" PRIu32 " of batch %s %s\n", rec->index, id,
                    rec->operation ? "out of order" : "without its operation");
            goto done;
        }
        last = rec->index;
        if (add_operation(b, rec, id) < 0) {
            fprintf(ctl->err, "batchctl: out of memory\n");
            goto done;
        }
        os->taken++;
        if (ops_advance(ctl, os) < 0)
            goto done;
    }
    rc = 0;
done:
    *n_failed = failed.taken;
    *n_cancelled = cancelled.taken;
    ops_close(&failed);
    ops_close(&cancelled);
    return rc;
}

/* A deep copy of the original batch's effective options (a retry-of label among them is
 * replaced by the caller). */
static Batch__V1__BatchOptions *options_of(const Batch__V1__Batch *orig)
{
    Batch__V1__BatchOptions *bo = NULL;
    if (orig->options) {
        size_t len = 0;
        uint8_t *buf = pbgrpc_pack_bytes(&orig->options->base, &len);
        if (buf)
            bo = batch__v1__batch_options__unpack(NULL, len, buf);
        free(buf);
    } else if ((bo = malloc(sizeof *bo)) != NULL) {
        batch__v1__batch_options__init(bo);
    }
    return bo;
}

int cmd_retry(bctl *ctl)
{
    const bctl_opts *o = ctl->o;
    const char *id = o->args[0];
    if (cmd_output_writable(ctl) < 0)
        return BCTL_EXIT_ERROR;
    Batch__V1__GetBatchRequest get = BATCH__V1__GET_BATCH_REQUEST__INIT;
    get.batch_id = (char *)id;
    Batch__V1__Batch *orig = (Batch__V1__Batch *)bctl_call(ctl, BCTL_M_GET, &get.base, &batch__v1__batch__descriptor, NULL);
    if (orig == NULL)
        return BCTL_EXIT_ERROR;
    builder b = {0};
    int rc = BCTL_EXIT_ERROR;
    char hint[160];
    bctl_server_hint(ctl, hint, sizeof hint);
    if (!bctl_batch_ended(orig->state)) {
        fprintf(ctl->err, "batchctl: batch %s is still %s: wait for it to end (batchctl watch %s%s) or cancel it\n",
                id, out_batch_state(orig->state), id, hint);
        goto done;
    }
    const Batch__V1__Counts *c = orig->counts;
    size_t n_failed = 0, n_cancelled = 0;
    if (c == NULL || c->failed + c->cancelled == 0) {
        fprintf(ctl->err, "batchctl: every item of batch %s succeeded: nothing to retry\n", id);
        rc = BCTL_EXIT_OK;
        goto done;
    }
    if (builder_init(&b, ctl) < 0) {
        fprintf(ctl->err, "batchctl: out of memory\n");
        goto done;
    }
    if ((rc = read_operations(ctl, &b, id, &n_failed, &n_cancelled)) != 0)
        goto done;
    if (b.n_ops == 0) {
        fprintf(ctl->err, "batchctl: batchd lists no failed or cancelled operation of batch %s: nothing to retry\n",
                id);
        goto done; /* rc is 0 */
    }
    rc = BCTL_EXIT_ERROR;
    Batch__V1__SubmitBatchRequest *req = b.req;
    req->options = options_of(orig);
    if (req->options == NULL || options_set_label(req->options, "retry-of", 8, id) < 0 ||
        options_apply_flags(o, req->options) < 0 ||
        (o->request_id && msg_set_string(&req->request_id, "%s", o->request_id) < 0)) {
        fprintf(ctl->err, "batchctl: out of memory\n");
        goto done;
    }
    req->validate_only = o->validate_only;
    if (!o->quiet && !o->validate_only)
        fprintf(ctl->err, "batchctl: retrying %zu item%s of batch %s: %zu failed, %zu cancelled\n", b.n_ops,
                b.n_ops == 1 ? "" : "s", id, n_failed, n_cancelled);
    char what[96];
    snprintf(what, sizeof what, "the retry of batch %s", id);
    rc = submit_and_follow(&b, what, NULL);
done:
    builder_free(&b);
    batch__v1__batch__free_unpacked(orig, NULL);
    return rc;
}
