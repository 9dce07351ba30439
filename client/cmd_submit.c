/* submit: read the input into one SubmitBatchRequest, submit it, follow the batch, write its
 * results. The builder and submit_and_follow are retry's too (submit.h).
 *
 * Memory: each operation is packed as soon as it is read (from the input, or for retry from
 * batchd) and its message freed, so a large batch costs its packed size (smaller than the
 * text) plus the input line of each operation, not a tree of messages. The packed operations reach the wire as the request's unknown
 * fields with field number 1: protobuf-c writes an unknown field as its tag followed by its
 * data verbatim (for a length-delimited one the data starts with the length), and a
 * repeated message field is exactly such a sequence of records, so the bytes sent are those
 * of a request whose `operations` hold them. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "diag.h"
#include "input.h"
#include "output.h"
#include "pbtime.h"
#include "submit.h"
#include "watch.h"

#define OPERATIONS_FIELD 1 /* SubmitBatchRequest.operations */

int builder_init(builder *b, bctl *ctl)
{
    memset(b, 0, sizeof *b);
    b->ctl = ctl;
    if ((b->req = malloc(sizeof *b->req)) == NULL)
        return -1;
    batch__v1__submit_batch_request__init(b->req);
    return 0;
}

void builder_free(builder *b)
{
    if (b->req)
        batch__v1__submit_batch_request__free_unpacked(b->req, NULL);
    free(b->packed);
    free(b->op_len);
    free(b->line_of);
    memset(b, 0, sizeof *b);
}

int msg_set_string(char **field, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if (*field != protobuf_c_empty_string)
        free(*field);
    *field = s;
    return 0;
}

/* Appends op, packed after its length as a varint. */
int builder_pack(builder *b, const Batch__V1__Operation *op, uint32_t line)
{
    size_t body = batch__v1__operation__get_packed_size(op);
    uint8_t prefix[10];
    size_t plen = 0;
    for (uint64_t v = body; plen == 0 || v; v >>= 7)
        prefix[plen++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
    size_t len = plen + body;
    if (b->n_ops == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        uint32_t *lens = realloc(b->op_len, cap * sizeof *lens);
        if (lens)
            b->op_len = lens;
        uint32_t *lines = realloc(b->line_of, cap * sizeof *lines);
        if (lines)
            b->line_of = lines;
        if (!lens || !lines)
            return -1;
        b->cap = cap;
    }
    if (b->packed_len + len > b->packed_cap) {
        size_t cap = b->packed_cap ? b->packed_cap : 64 * 1024;
        while (cap < b->packed_len + len)
            cap *= 2;
        uint8_t *p = realloc(b->packed, cap);
        if (p == NULL)
            return -1;
        b->packed = p;
        b->packed_cap = cap;
    }
    if (len > UINT32_MAX)
        return -1;
    memcpy(b->packed + b->packed_len, prefix, plen);
    batch__v1__operation__pack(op, b->packed + b->packed_len + plen);
    b->packed_len += len;
    b->op_len[b->n_ops] = (uint32_t)len;
    b->line_of[b->n_ops++] = line;
    return 0;
}

/* The input sink: applies --target to op and packs it. */
static int builder_add(void *arg, Batch__V1__Operation *op, uint32_t line, input_error *err)
{
    builder *b = arg;
    int rc = 0;
    if (bctl_interrupted(b->ctl)) {
        batch__v1__operation__free_unpacked(op, NULL);
        return input_fail(err, line, 0, "interrupted");
    }
    if (b->ctl->o->target && op->target[0] == '\0')
        rc = msg_set_string(&op->target, "%s", b->ctl->o->target);
    if (rc == 0)
        rc = builder_pack(b, op, line);
    batch__v1__operation__free_unpacked(op, NULL);
    return rc < 0 ? input_fail(err, line, 0, "out of memory") : 0;
}

/* SubmitBatch with the packed operations; see the top of the file. */
static ProtobufCMessage *builder_submit(builder *b, rpcclient_status *st)
{
    ProtobufCMessageUnknownField *ops = calloc(b->n_ops ? b->n_ops : 1, sizeof *ops);
    if (ops == NULL) {
        st->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        st->message = strdup("out of memory");
        return NULL;
    }
    size_t off = 0;
    for (size_t i = 0; i < b->n_ops; i++) {
        ops[i].tag = OPERATIONS_FIELD;
        ops[i].wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        ops[i].len = b->op_len[i];
        ops[i].data = b->packed + off;
        off += b->op_len[i];
    }
    b->req->base.unknown_fields = ops;
    b->req->base.n_unknown_fields = (unsigned)b->n_ops;
    ProtobufCMessage *m = NULL;
    rpcclient_unary(bctl_rpc(b->ctl), BCTL_M_SUBMIT, &b->req->base, &batch__v1__submit_batch_response__descriptor, &m,
                    bctl_timeout_s(b->ctl), st);
    /* The fields point into b->packed: never let free_unpacked see them. */
    b->req->base.unknown_fields = NULL;
    b->req->base.n_unknown_fields = 0;
    free(ops);
    return m;
}

static const char *shown_name(const char *file)
{
    return strcmp(file, "-") == 0 ? "<stdin>" : file;
}

/* Reads file into b. Returns 0, or the exit status to end with (the reason printed).
 * *rest gets the JSON document's other fields, if any (caller frees). */
static int read_input(builder *b, const char *file, Batch__V1__SubmitBatchRequest **rest)
{
    bctl *ctl = b->ctl;
    const bctl_opts *o = ctl->o;
    int is_stdin = strcmp(file, "-") == 0;
    *rest = NULL;
    input_format fmt = o->format != INPUT_AUTO ? o->format : is_stdin ? INPUT_AUTO : input_format_from_name(file);
    if (fmt == INPUT_AUTO) {
        fprintf(ctl->err, "batchctl: %s: cannot tell the input format from the name: give --format json, ndjson "
                          "or csv\n", shown_name(file));
        return BCTL_EXIT_ERROR;
    }
    if (fmt != INPUT_CSV && (o->csv.method || o->csv.path || o->csv.id_column || o->csv.strings)) {
        fprintf(ctl->err, "batchctl: --method, --path, --id-column and --csv-strings apply to CSV input only\n");
        return BCTL_EXIT_ERROR;
    }
    FILE *f = is_stdin ? stdin : fopen(file, "r");
    if (f == NULL) {
        fprintf(ctl->err, "batchctl: cannot read %s: %s\n", file, strerror(errno));
        return BCTL_EXIT_ERROR;
    }
    input_source src = {.f = f, .format = fmt, .csv = &o->csv, .sink = builder_add, .arg = b};
    input_error e;
    int rc = input_read(&src, &e);
    if (!is_stdin)
        fclose(f);
    *rest = src.rest;
    if (rc == 0)
        return 0;
    if (bctl_interrupted(ctl)) {
        fprintf(ctl->err, "batchctl: interrupted; nothing was submitted\n");
        return BCTL_EXIT_INTERRUPTED;
    }
    if (e.line && e.column)
        fprintf(ctl->err, "%s:%u:%u: %s\n", shown_name(file), e.line, e.column, e.msg);
    else if (e.line)
        fprintf(ctl->err, "%s:%u: %s\n", shown_name(file), e.line, e.msg);
    else
        fprintf(ctl->err, "batchctl: %s: %s\n", shown_name(file), e.msg);
    fprintf(ctl->err, "batchctl: nothing was submitted\n");
    return BCTL_EXIT_ERROR;
}

/* ---- batch options ------------------------------------------------------------------ */

int options_set_label(Batch__V1__BatchOptions *bo, const char *key, size_t klen, const char *value)
{
    for (size_t i = 0; i < bo->n_labels; i++)
        if (strlen(bo->labels[i]->key) == klen && strncmp(bo->labels[i]->key, key, klen) == 0)
            return msg_set_string(&bo->labels[i]->value, "%s", value);
    Batch__V1__BatchOptions__LabelsEntry **l = realloc(bo->labels, (bo->n_labels + 1) * sizeof *l);
    if (l == NULL)
        return -1;
    bo->labels = l;
    Batch__V1__BatchOptions__LabelsEntry *e = malloc(sizeof *e);
    if (e == NULL)
        return -1;
    batch__v1__batch_options__labels_entry__init(e);
    bo->labels[bo->n_labels++] = e;
    if (msg_set_string(&e->key, "%.*s", (int)klen, key) < 0 || msg_set_string(&e->value, "%s", value) < 0)
        return -1;
    return 0;
}

/* The flags override the options the input (or the original batch) had. */
int options_apply_flags(const bctl_opts *o, Batch__V1__BatchOptions *bo)
{
    if (o->concurrency)
        bo->max_concurrency = o->concurrency;
    if (o->attempts)
        bo->max_attempts = o->attempts;
    if (o->rate >= 0)
        bo->max_rate = o->rate;
    if (o->stop_on_failure)
        bo->stop_on_failure = 1;
    if (o->item_timeout_ns >= 0) {
        if (bo->item_timeout == NULL && (bo->item_timeout = malloc(sizeof *bo->item_timeout)) == NULL)
            return -1;
        google__protobuf__duration__init(bo->item_timeout);
        pbtime_duration_set(bo->item_timeout, o->item_timeout_ns);
    }
    for (size_t i = 0; i < o->n_labels; i++) {
        size_t klen;
        const char *value = opt_label_value(o->labels[i], &klen);
        if (options_set_label(bo, o->labels[i], klen, value) < 0)
            return -1;
    }
    /* Answered at once, then followed over WatchBatch: one way for any size of batch. */
    bo->mode = BATCH__V1__MODE__MODE_ASYNC;
    return 0;
}

/* ---- submitting and following -------------------------------------------------------- */

static void failure_hints(bctl *ctl, const char *id)
{
    char hint[160];
    bctl_server_hint(ctl, hint, sizeof hint);
    fprintf(ctl->err, "  the failures:  batchctl results %s --state failed --format-out csv%s\n", id, hint);
    fprintf(ctl->err, "  retry them:    batchctl retry %s%s\n", id, hint);
}

int submit_and_follow(builder *b, const char *what, const char *file)
{
    bctl *ctl = b->ctl;
    const bctl_opts *o = ctl->o;
    size_t n = b->n_ops;
    rpcclient_status st = {0};
    ProtobufCMessage *m = builder_submit(b, &st);
    if (m == NULL) {
        diag_origin origin = {file, b->line_of, n};
        diag_rpc(ctl->err, o->server, &st, file ? &origin : NULL);
        rpcclient_status_clear(&st);
        return bctl_interrupted(ctl) ? BCTL_EXIT_INTERRUPTED : BCTL_EXIT_ERROR;
    }
    rpcclient_status_clear(&st);
    int validate_only = b->req->validate_only;
    builder_free(b); /* the operations are on the server now */
    Batch__V1__SubmitBatchResponse *resp = (Batch__V1__SubmitBatchResponse *)m;
    char id[64];
    snprintf(id, sizeof id, "%s", resp->batch ? resp->batch->id : "");
    batch__v1__submit_batch_response__free_unpacked(resp, NULL);
    if (id[0] == '\0' && !validate_only) {
        fprintf(ctl->err, "batchctl: batchd accepted the batch but sent no batch id\n");
        return BCTL_EXIT_ERROR;
    }

    progress pg;
    progress_init(&pg, ctl->err, &ctl->progress, pbtime_mono_ns());
    if (validate_only) {
        fprintf(ctl->err, "%s: %zu operation%s valid; nothing was created\n", what, n,
                n == 1 ? " is" : "s are");
        return BCTL_EXIT_OK;
    }
    if (bctl_interrupted(ctl))
        return watch_interrupted(ctl, &pg, id);
    if (o->async) {
        char hint[160];
        fprintf(ctl->out, "%s\n", id);
        fprintf(ctl->err, "batch %s accepted: %zu operations; follow it with: batchctl watch %s%s\n", id, n, id,
                bctl_server_hint(ctl, hint, sizeof hint));
        return BCTL_EXIT_OK;
    }
    progress_note(&pg, "batch %s accepted: %zu operations", id, n);
    watch_req wr = {.batch_id = id};
    Batch__V1__Batch *final = NULL;
    watch_end end = watch_follow(ctl, &wr, &pg, &final);
    if (end == WATCH_INTERRUPTED)
        return watch_interrupted(ctl, &pg, id);
    if (end == WATCH_ERROR)
        return BCTL_EXIT_ERROR;
    progress_end(&pg, final, pbtime_mono_ns());
    int rc = watch_exit_status(final->state);
    if (cmd_write_results(ctl, id, 0) < 0)
        rc = bctl_interrupted(ctl) ? BCTL_EXIT_INTERRUPTED : BCTL_EXIT_ERROR;
    progress_summary(&pg, final, pbtime_mono_ns());
    if (final->state != BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED && !o->quiet)
        failure_hints(ctl, id);
    batch__v1__batch__free_unpacked(final, NULL);
    return rc;
}

int cmd_submit(bctl *ctl)
{
    const bctl_opts *o = ctl->o;
    const char *file = o->args[0];
    builder b;
    Batch__V1__SubmitBatchRequest *rest = NULL;
    if (cmd_output_writable(ctl) < 0)
        return BCTL_EXIT_ERROR;
    if (builder_init(&b, ctl) < 0) {
        fprintf(ctl->err, "batchctl: out of memory\n");
        return BCTL_EXIT_ERROR;
    }
    int rc = read_input(&b, file, &rest);
    if (rc != 0)
        goto done;
    rc = BCTL_EXIT_ERROR;
    if (b.n_ops == 0) {
        fprintf(ctl->err, "batchctl: %s has no operations; nothing was submitted\n", shown_name(file));
        goto done;
    }
    Batch__V1__SubmitBatchRequest *req = b.req;
    if (rest && rest->options) {
        req->options = rest->options;
        rest->options = NULL;
    } else if ((req->options = malloc(sizeof *req->options)) != NULL) {
        batch__v1__batch_options__init(req->options);
    }
    if (req->options == NULL || options_apply_flags(o, req->options) < 0 ||
        (o->request_id && msg_set_string(&req->request_id, "%s", o->request_id) < 0)) {
        fprintf(ctl->err, "batchctl: out of memory\n");
        goto done;
    }
    if (!o->request_id && rest && rest->request_id[0]) {
        req->request_id = rest->request_id;
        rest->request_id = (char *)protobuf_c_empty_string;
    }
    req->validate_only = o->validate_only || (rest && rest->validate_only);
    rc = submit_and_follow(&b, shown_name(file), file);
done:
    if (rest)
        batch__v1__submit_batch_request__free_unpacked(rest, NULL);
    builder_free(&b);
    return rc;
}
