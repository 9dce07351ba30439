/* Results and batches as text: NDJSON, CSV and JSON writers, `get` details, `list` table. */
#include "output.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pbjson.h"
#include "pbtime.h"

out_format out_format_parse(const char *s)
{
    if (strcasecmp(s, "ndjson") == 0 || strcasecmp(s, "jsonl") == 0)
        return OUT_NDJSON;
    if (strcasecmp(s, "csv") == 0)
        return OUT_CSV;
    if (strcasecmp(s, "json") == 0)
        return OUT_JSON;
    return OUT_AUTO;
}

out_format out_format_from_name(const char *name)
{
    const char *dot = name ? strrchr(name, '.') : NULL;
    out_format f = dot && !strchr(dot, '/') ? out_format_parse(dot + 1) : OUT_AUTO;
    return f == OUT_AUTO ? OUT_NDJSON : f;
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v, size_t prefix)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    return ev ? ev->name + prefix : "UNKNOWN";
}

const char *out_item_state(int state)
{
    return enum_name(&batch__v1__item_state__descriptor, state, strlen("ITEM_STATE_"));
}

const char *out_batch_state(int state)
{
    return enum_name(&batch__v1__batch_state__descriptor, state, strlen("BATCH_STATE_"));
}

void out_csv_field(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int out_json_line(FILE *f, const ProtobufCMessage *m, FILE *err)
{
    char *why = NULL;
    char *text = pbjson_print_text(m, NULL, JSON_COMPACT, &why);
    if (text == NULL) {
        fprintf(err, "batchctl: cannot print a %s as JSON: %s\n", m->descriptor->name, why ? why : "out of memory");
        free(why);
        return -1;
    }
    fputs(text, f);
    fputc('\n', f);
    free(text);
    return ferror(f) ? -1 : 0;
}

int out_begin(out_writer *w, FILE *f, out_format fmt)
{
    w->f = f;
    w->fmt = fmt == OUT_AUTO ? OUT_NDJSON : fmt;
    w->n = 0;
    if (w->fmt == OUT_CSV)
        fputs("id,state,http_status,error\n", f);
    else if (w->fmt == OUT_JSON)
        fputs("[", f);
    return ferror(f) ? -1 : 0;
}

int out_result(out_writer *w, const Batch__V1__ItemResult *r)
{
    if (w->fmt == OUT_CSV) {
        out_csv_field(w->f, r->id);
        fprintf(w->f, ",%s,", out_item_state(r->state));
        if (r->http_status)
            fprintf(w->f, "%d", r->http_status);
        fputc(',', w->f);
        out_csv_field(w->f, r->error && r->error->message ? r->error->message : "");
        fputc('\n', w->f);
    } else {
        char *text = pbjson_print_text(&r->base, NULL, JSON_COMPACT, NULL);
        if (text == NULL)
            return -1;
        if (w->fmt == OUT_JSON)
            fputs(w->n ? ",\n" : "\n", w->f);
        fputs(text, w->f);
        if (w->fmt == OUT_NDJSON)
            fputc('\n', w->f);
        free(text);
    }
    w->n++;
    return ferror(w->f) ? -1 : 0;
}

int out_end(out_writer *w)
{
    if (w->fmt == OUT_JSON)
        fputs(w->n ? "\n]\n" : "]\n", w->f);
    return fflush(w->f) != 0 || ferror(w->f) ? -1 : 0;
}

void out_duration(char *buf, size_t len, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    int64_t s = ns / PBTIME_NS_PER_SEC;
    if (ns < PBTIME_NS_PER_SEC)
        snprintf(buf, len, "%lldms", (long long)(ns / PBTIME_NS_PER_MS));
    else if (s < 60)
        snprintf(buf, len, "%.1fs", (double)ns / 1e9);
    else if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else
        snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
}

static void timestamp(char *buf, size_t len, const Google__Protobuf__Timestamp *ts)
{
    if (ts == NULL) {
        snprintf(buf, len, "-");
        return;
    }
    time_t t = (time_t)ts->seconds;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static uint32_t ended(const Batch__V1__Counts *c)
{
    return c ? c->succeeded + c->failed + c->cancelled : 0;
}

static void labels_text(char *buf, size_t len, const Batch__V1__BatchOptions *o)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; o && i < o->n_labels && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s=%s", i ? "," : "", o->labels[i]->key,
                                 o->labels[i]->value);
    if (buf[0] == '\0')
        snprintf(buf, len, "-");
}

void out_batch_details(FILE *f, const Batch__V1__Batch *b)
{
    static const Batch__V1__Counts zero = BATCH__V1__COUNTS__INIT;
    const Batch__V1__Counts *c = b->counts ? b->counts : &zero;
    char created[32], started[32], endt[32], labels[512], dur[24], took[32] = "";
    timestamp(created, sizeof created, b->create_time);
    timestamp(started, sizeof started, b->start_time);
    timestamp(endt, sizeof endt, b->end_time);
    if (b->start_time && b->end_time) {
        out_duration(dur, sizeof dur, pbtime_timestamp_ns(b->end_time) - pbtime_timestamp_ns(b->start_time));
        snprintf(took, sizeof took, " (%s)", dur);
    }
    labels_text(labels, sizeof labels, b->options);
    fprintf(f, "id:          %s\n", b->id);
    fprintf(f, "state:       %s\n", out_batch_state(b->state));
    fprintf(f, "progress:    %u/%u (%.0f%%)\n", ended(c), c->total, b->progress * 100);
    fprintf(f, "items:       %u succeeded, %u failed, %u cancelled, %u running, %u pending\n", c->succeeded,
            c->failed, c->cancelled, c->running, c->pending);
    fprintf(f, "created:     %s\n", created);
    fprintf(f, "started:     %s\n", started);
    fprintf(f, "ended:       %s%s\n", endt, took);
    if (b->options) {
        const Batch__V1__BatchOptions *o = b->options;
        char timeout[32] = "-", rate[32] = "unlimited";
        if (o->item_timeout)
            out_duration(timeout, sizeof timeout,
                         o->item_timeout->seconds * PBTIME_NS_PER_SEC + o->item_timeout->nanos);
        if (o->max_rate > 0)
            snprintf(rate, sizeof rate, "%g/s", o->max_rate);
        fprintf(f, "options:     concurrency %u, attempts %u, item timeout %s, rate %s%s\n", o->max_concurrency,
                o->max_attempts, timeout, rate, o->stop_on_failure ? ", stop on failure" : "");
    }
    fprintf(f, "labels:      %s\n", labels);
    if (b->request_id && b->request_id[0])
        fprintf(f, "request id:  %s\n", b->request_id);
    if (b->error && b->error->message && b->error->message[0])
        fprintf(f, "error:       %s\n", b->error->message);
}

void out_batch_table(FILE *f, Batch__V1__Batch *const *b, size_t n)
{
    enum { ID, STATE, DONE, OK, FAILED, CANCELLED, CREATED, LABELS, NCOL };
    static const char *const head[NCOL] = {"ID", "STATE", "DONE", "SUCCEEDED", "FAILED", "CANCELLED", "CREATED",
                                           "LABELS"};
    char (*cells)[NCOL][160] = calloc(n + 1, sizeof *cells);
    if (cells == NULL)
        return;
    int width[NCOL] = {0};
    for (size_t r = 0; r <= n; r++) {
        for (int k = 0; k < NCOL; k++) {
            if (r == 0) {
                snprintf(cells[r][k], sizeof cells[r][k], "%s", head[k]);
                continue;
            }
            const Batch__V1__Batch *x = b[r - 1];
            const Batch__V1__Counts *c = x->counts;
            switch (k) {
            case ID: snprintf(cells[r][k], sizeof cells[r][k], "%s", x->id); break;
            case STATE: snprintf(cells[r][k], sizeof cells[r][k], "%s", out_batch_state(x->state)); break;
            case DONE: snprintf(cells[r][k], sizeof cells[r][k], "%u/%u", ended(c), c ? c->total : 0); break;
            case OK: snprintf(cells[r][k], sizeof cells[r][k], "%u", c ? c->succeeded : 0); break;
            case FAILED: snprintf(cells[r][k], sizeof cells[r][k], "%u", c ? c->failed : 0); break;
            case CANCELLED: snprintf(cells[r][k], sizeof cells[r][k], "%u", c ? c->cancelled : 0); break;
            case CREATED: timestamp(cells[r][k], sizeof cells[r][k], x->create_time); break;
            default: labels_text(cells[r][k], sizeof cells[r][k], x->options); break;
            }
        }
    }
    for (size_t r = 0; r <= n; r++)
        for (int k = 0; k < NCOL; k++)
            if ((int)strlen(cells[r][k]) > width[k])
                width[k] = (int)strlen(cells[r][k]);
    for (size_t r = 0; r <= n; r++) {
        for (int k = 0; k < NCOL - 1; k++)
            fprintf(f, "%-*s  ", width[k], cells[r][k]);
        fprintf(f, "%s\n", cells[r][NCOL - 1]);
    }
    free(cells);
}
