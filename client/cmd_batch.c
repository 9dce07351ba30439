/* The commands about an existing batch: watch, get, list, cancel, results. */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "diag.h"
#include "output.h"
#include "pbtime.h"
#include "watch.h"

int cmd_each_result(bctl *ctl, const char *id, int state,
                    int (*fn)(void *arg, const Batch__V1__ItemResult *r), void *arg)
{
    Batch__V1__ListResultsRequest req = BATCH__V1__LIST_RESULTS_REQUEST__INIT;
    req.batch_id = (char *)id;
    req.state = state;
    rpcclient_stream *s = rpcclient_stream_open(bctl_rpc(ctl), BCTL_M_RESULTS, &req.base, 0);
    int rc = 0, r;
    ProtobufCMessage *m = NULL;
    /* No deadline for the whole stream (a large batch takes its time), but each result
     * must come within --timeout. */
    while ((r = rpcclient_stream_next(s, &batch__v1__item_result__descriptor, &m, bctl_timeout_s(ctl))) == 1) {
        int stop = fn(arg, (Batch__V1__ItemResult *)m);
        protobuf_c_message_free_unpacked(m, NULL);
        if (stop < 0 || bctl_interrupted(ctl)) {
            rc = -1;
            break;
        }
    }
    if (r == -2 || r == -1 || rc < 0)
        rpcclient_stream_cancel(s);
    rpcclient_status st = {0};
    grpc_status_code code = rpcclient_stream_finish(s, &st);
    if (r == -2) {
        fprintf(ctl->err, "batchctl: batchd at %s sent no result for %.0fs (--timeout)\n", ctl->o->server,
                bctl_timeout_s(ctl));
        rc = -1;
    } else if (r == -1) {
        fprintf(ctl->err, "batchctl: batchd sent a result that cannot be decoded\n");
        rc = -1;
    } else if (rc < 0 && bctl_interrupted(ctl)) {
        fprintf(ctl->err, "batchctl: interrupted while reading the results\n");
    } else if (rc == 0 && code != GRPC_STATUS_OK) {
        diag_rpc(ctl->err, ctl->o->server, &st, NULL);
        rc = -1;
    }
    rpcclient_status_clear(&st);
    return rc;
}

static int write_one(void *arg, const Batch__V1__ItemResult *r)
{
    return out_result(arg, r);
}

int cmd_output_writable(bctl *ctl)
{
    const char *path = ctl->o->output;
    if (path == NULL || strcmp(path, "-") == 0)
        return 0;
    char *copy = strdup(path);
    if (copy == NULL)
        return -1;
    /* The file if it exists, else the directory it would be made in. */
    int ok = access(path, F_OK) == 0 ? access(path, W_OK) == 0 : access(dirname(copy), W_OK) == 0;
    free(copy);
    if (!ok)
        fprintf(ctl->err, "batchctl: cannot write the results to %s: %s\n", path, strerror(errno));
    return ok ? 0 : -1;
}

int cmd_write_results(bctl *ctl, const char *id, int state)
{
    const char *path = ctl->o->output;
    int to_file = path && strcmp(path, "-") != 0;
    FILE *f = to_file ? fopen(path, "w") : ctl->out;
    if (f == NULL) {
        fprintf(ctl->err, "batchctl: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    out_format fmt = ctl->o->format_out != OUT_AUTO ? ctl->o->format_out : out_format_from_name(to_file ? path : NULL);
    out_writer w;
    int rc = out_begin(&w, f, fmt);
    if (rc == 0)
        rc = cmd_each_result(ctl, id, state, write_one, &w);
    if (out_end(&w) < 0 && rc == 0) {
        fprintf(ctl->err, "batchctl: writing the results to %s failed: %s\n", to_file ? path : "stdout", strerror(errno));
        rc = -1;
    }
    if (to_file && fclose(f) != 0 && rc == 0) {
        fprintf(ctl->err, "batchctl: writing %s failed: %s\n", path, strerror(errno));
        rc = -1;
    }
    return rc;
}

static int print_event(void *arg, const Batch__V1__BatchEvent *ev)
{
    bctl *ctl = arg;
    int rc = out_json_line(ctl->out, &ev->base, ctl->err);
    fflush(ctl->out); /* a reader of the pipe sees each event as it happens */
    return rc;
}

int cmd_watch(bctl *ctl)
{
    const char *id = ctl->o->args[0];
    progress pg;
    progress_init(&pg, ctl->err, &ctl->progress, pbtime_mono_ns());
    watch_req req = {.batch_id = id, .include_items = ctl->o->json};
    if (ctl->o->json) {
        req.on_event = print_event;
        req.arg = ctl;
    }
    Batch__V1__Batch *final = NULL;
    watch_end end = watch_follow(ctl, &req, &pg, &final);
    if (end == WATCH_INTERRUPTED)
        return watch_interrupted(ctl, &pg, id);
    if (end == WATCH_ERROR)
        return BCTL_EXIT_ERROR;
    progress_end(&pg, final, pbtime_mono_ns());
    progress_summary(&pg, final, pbtime_mono_ns());
    int rc = watch_exit_status(final->state);
    batch__v1__batch__free_unpacked(final, NULL);
    return rc;
}

int cmd_get(bctl *ctl)
{
    Batch__V1__GetBatchRequest req = BATCH__V1__GET_BATCH_REQUEST__INIT;
    req.batch_id = (char *)ctl->o->args[0];
    Batch__V1__Batch *b = (Batch__V1__Batch *)bctl_call(ctl, BCTL_M_GET, &req.base, &batch__v1__batch__descriptor, NULL);
    if (b == NULL)
        return BCTL_EXIT_ERROR;
    int rc = BCTL_EXIT_OK;
    if (ctl->o->json)
        rc = out_json_line(ctl->out, &b->base, ctl->err) < 0 ? BCTL_EXIT_ERROR : BCTL_EXIT_OK;
    else
        out_batch_details(ctl->out, b);
    batch__v1__batch__free_unpacked(b, NULL);
    return rc;
}

int cmd_list(bctl *ctl)
{
    const bctl_opts *o = ctl->o;
    Batch__V1__ListBatchesRequest req = BATCH__V1__LIST_BATCHES_REQUEST__INIT;
    Batch__V1__ListBatchesRequest__LabelsEntry *entries = calloc(o->n_labels + 1, sizeof *entries);
    Batch__V1__ListBatchesRequest__LabelsEntry **ptrs = calloc(o->n_labels + 1, sizeof *ptrs);
    char **keys = calloc(o->n_labels + 1, sizeof *keys);
    Batch__V1__ListBatchesResponse **pages = NULL;
    Batch__V1__Batch **all = NULL;
    size_t n_pages = 0, n = 0;
    int rc = BCTL_EXIT_ERROR;
    if (!entries || !ptrs || !keys)
        goto done;
    for (size_t i = 0; i < o->n_labels; i++) {
        size_t klen;
        const char *value = opt_label_value(o->labels[i], &klen);
        if ((keys[i] = strndup(o->labels[i], klen)) == NULL)
            goto done;
        batch__v1__list_batches_request__labels_entry__init(&entries[i]);
        entries[i].key = keys[i];
        entries[i].value = (char *)value;
        ptrs[i] = &entries[i];
    }
    req.labels = ptrs;
    req.n_labels = o->n_labels;
    req.state = o->batch_state;
    req.page_token = "";
    for (;;) {
        size_t want = o->limit ? o->limit - n : 1000;
        req.page_size = (uint32_t)(want < 1000 ? want : 1000);
        Batch__V1__ListBatchesResponse *page = (Batch__V1__ListBatchesResponse *)bctl_call(
            ctl, BCTL_M_LIST, &req.base, &batch__v1__list_batches_response__descriptor, NULL);
        if (page == NULL)
            goto done;
        Batch__V1__ListBatchesResponse **p = realloc(pages, (n_pages + 1) * sizeof *p);
        Batch__V1__Batch **a = realloc(all, (n + page->n_batches + 1) * sizeof *a);
        if (p)
            pages = p;
        if (a)
            all = a;
        if (!p || !a) {
            batch__v1__list_batches_response__free_unpacked(page, NULL);
            goto done;
        }
        pages[n_pages++] = page;
        for (size_t i = 0; i < page->n_batches && (o->limit == 0 || n < o->limit); i++)
            all[n++] = page->batches[i];
        if (page->next_page_token[0] == '\0' || (o->limit && n >= o->limit))
            break;
        req.page_token = page->next_page_token;
    }
    if (o->json) {
        for (size_t i = 0; i < n; i++)
            if (out_json_line(ctl->out, &all[i]->base, ctl->err) < 0)
                goto done;
    } else if (n == 0) {
        fprintf(ctl->err, "no batches found\n");
    } else {
        out_batch_table(ctl->out, all, n);
    }
    rc = BCTL_EXIT_OK;
done:
    for (size_t i = 0; i < n_pages; i++)
        batch__v1__list_batches_response__free_unpacked(pages[i], NULL);
    free(pages);
    free(all);
    for (size_t i = 0; keys && i < o->n_labels; i++)
        free(keys[i]);
    free(keys);
    free(ptrs);
    free(entries);
    return rc;
}

int cmd_cancel(bctl *ctl)
{
    const char *id = ctl->o->args[0];
    Batch__V1__GetBatchRequest get = BATCH__V1__GET_BATCH_REQUEST__INIT;
    get.batch_id = (char *)id;
    /* Looked up first, to tell "cancelled now" from "had already ended". */
    Batch__V1__Batch *before = (Batch__V1__Batch *)bctl_call(ctl, BCTL_M_GET, &get.base, &batch__v1__batch__descriptor, NULL);
    if (before == NULL)
        return BCTL_EXIT_ERROR;
    int was_ended = bctl_batch_ended(before->state);
    batch__v1__batch__free_unpacked(before, NULL);
    Batch__V1__CancelBatchRequest req = BATCH__V1__CANCEL_BATCH_REQUEST__INIT;
    req.batch_id = (char *)id;
    Batch__V1__Batch *b = (Batch__V1__Batch *)bctl_call(ctl, BCTL_M_CANCEL, &req.base, &batch__v1__batch__descriptor, NULL);
    if (b == NULL)
        return BCTL_EXIT_ERROR;
    const Batch__V1__Counts *c = b->counts;
    fprintf(ctl->out, "batch %s %s%s: %u succeeded, %u failed, %u cancelled of %u\n", id,
            was_ended ? "had already ended " : "", out_batch_state(b->state), c ? c->succeeded : 0,
            c ? c->failed : 0, c ? c->cancelled : 0, c ? c->total : 0);
    batch__v1__batch__free_unpacked(b, NULL);
    return BCTL_EXIT_OK;
}

int cmd_results(bctl *ctl)
{
    if (cmd_write_results(ctl, ctl->o->args[0], ctl->o->item_state) == 0)
        return BCTL_EXIT_OK;
    return bctl_interrupted(ctl) ? BCTL_EXIT_INTERRUPTED : BCTL_EXIT_ERROR;
}
