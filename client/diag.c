/* Failed calls explained (see diag.h): the google.rpc details batchd attaches (BadRequest,
 * QuotaFailure, ErrorInfo) are decoded and printed rather than the bare status. */
#include "diag.h"

#include <stdlib.h>
#include <string.h>

#include "google/rpc/error_details.pb-c.h"
#include "rpcstatus.h"

const char *diag_code_name(grpc_status_code code)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    };
    return code >= 0 && (size_t)code < sizeof names / sizeof names[0] ? names[code] : "UNKNOWN";
}

static void *detail(const rpcclient_status *st, const ProtobufCMessageDescriptor *desc)
{
    if (st->details == NULL)
        return NULL;
    for (size_t i = 0; i < st->details->n_details; i++) {
        ProtobufCMessage *m = rpcstatus_unpack_detail(st->details->details[i], desc);
        if (m)
            return m;
    }
    return NULL;
}

const char *diag_reason(const rpcclient_status *st, char *buf, size_t len)
{
    Google__Rpc__ErrorInfo *ei = detail(st, &google__rpc__error_info__descriptor);
    snprintf(buf, len, "%s", ei ? ei->reason : "");
    if (ei)
        google__rpc__error_info__free_unpacked(ei, NULL);
    return buf;
}

/* The ErrorInfo metadata value of key, copied into buf ("" if absent). */
static const char *error_metadata(const rpcclient_status *st, const char *key, char *buf, size_t len)
{
    buf[0] = '\0';
    Google__Rpc__ErrorInfo *ei = detail(st, &google__rpc__error_info__descriptor);
    for (size_t i = 0; ei && i < ei->n_metadata; i++)
        if (strcmp(ei->metadata[i]->key, key) == 0)
            snprintf(buf, len, "%s", ei->metadata[i]->value);
    if (ei)
        google__rpc__error_info__free_unpacked(ei, NULL);
    return buf;
}

/* One BadRequest violation; "operations[17].path" is traced to its input line. */
static void violation(FILE *f, const char *field, const char *desc, const diag_origin *o)
{
    unsigned long idx;
    char *end;
    if (o && o->line_of && strncmp(field, "operations[", 11) == 0 &&
        (idx = strtoul(field + 11, &end, 10), *end == ']') && idx < o->n && o->line_of[idx]) {
        fprintf(f, "%s:%u: %s: %s\n", strcmp(o->file, "-") == 0 ? "<stdin>" : o->file, o->line_of[idx], field,
                desc);
        return;
    }
    fprintf(f, "batchctl: %s%s%s\n", field, field[0] ? ": " : "", desc);
}

void diag_rpc(FILE *f, const char *server, const rpcclient_status *st, const diag_origin *origin)
{
    char reason[64], limit[32];
    const char *msg = st->message && st->message[0] ? st->message : "no message";
    diag_reason(st, reason, sizeof reason);
    switch (st->code) {
    case GRPC_STATUS_UNAVAILABLE:
        if (strcmp(reason, "SHUTTING_DOWN") == 0)
            fprintf(f, "batchctl: batchd at %s is shutting down: %s\n", server, msg);
        else
            fprintf(f, "batchctl: cannot reach batchd at %s: %s\n", server, msg);
        return;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        fprintf(f, "batchctl: no answer from batchd at %s in time (--timeout): %s\n", server, msg);
        return;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        if (strcmp(reason, "TOO_MANY_ITEMS") == 0) {
            fprintf(f, "batchctl: batch refused: %s\n", msg);
            fprintf(f, "batchctl: batchd at %s takes at most %s operations per batch (batchd --max-items): "
                       "split the input or raise the limit\n",
                    server, error_metadata(st, "limit", limit, sizeof limit)[0] ? limit : "a limited number of");
            return;
        }
        break;
    default:
        break;
    }
    fprintf(f, "batchctl: %s: %s\n", diag_code_name(st->code), msg);
    Google__Rpc__BadRequest *br = detail(st, &google__rpc__bad_request__descriptor);
    for (size_t i = 0; br && i < br->n_field_violations; i++)
        violation(f, br->field_violations[i]->field, br->field_violations[i]->description, origin);
    if (br)
        google__rpc__bad_request__free_unpacked(br, NULL);
    Google__Rpc__QuotaFailure *qf = detail(st, &google__rpc__quota_failure__descriptor);
    for (size_t i = 0; qf && i < qf->n_violations; i++)
        fprintf(f, "batchctl: %s: %s\n", qf->violations[i]->subject, qf->violations[i]->description);
    if (qf)
        google__rpc__quota_failure__free_unpacked(qf, NULL);
}
