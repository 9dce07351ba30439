/* ItemResult construction. Results are packed once, when the item ends, and the bytes
 * are shared by every reader from then on. */
#include "result.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch/v1/batch.pb-c.h"
#include "pbtime.h"
#include "pbvalue.h"

grpc_status_code result_code_for_http(int s)
{
    switch (s) {
    case 400: return GRPC_STATUS_INVALID_ARGUMENT;
    case 401: return GRPC_STATUS_UNAUTHENTICATED;
    case 403: return GRPC_STATUS_PERMISSION_DENIED;
    case 404: return GRPC_STATUS_NOT_FOUND;
    case 409: return GRPC_STATUS_ABORTED;
    case 429: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case 501: return GRPC_STATUS_UNIMPLEMENTED;
    case 503: return GRPC_STATUS_UNAVAILABLE;
    case 504: return GRPC_STATUS_DEADLINE_EXCEEDED;
    default:
        if (s >= 500 && s <= 599)
            return GRPC_STATUS_INTERNAL;
        /* Other 4xx, and 1xx/3xx answers to a request that expected a final result:
         * the operation did not do what was asked, and retrying will not change that. */
        return GRPC_STATUS_FAILED_PRECONDITION;
    }
}

const char *result_http_reason(int s)
{
    switch (s) {
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

static int is_json_type(const char *ct)
{
    if (ct == NULL)
        return 0;
    /* application/json, application/problem+json, ...; parameters after ';' ignored. */
    const char *semi = strchr(ct, ';');
    size_t len = semi ? (size_t)(semi - ct) : strlen(ct);
    while (len > 0 && ct[len - 1] == ' ')
        len--;
    return (len >= 4 && strncasecmp(ct + len - 4, "json", 4) == 0);
}

grpc_slice result_build(const result_input *in)
{
    Batch__V1__ItemResult r = BATCH__V1__ITEM_RESULT__INIT;
    Google__Protobuf__Timestamp start, end;
    Google__Protobuf__Duration dur;
    Google__Rpc__Status err = GOOGLE__RPC__STATUS__INIT;
    Batch__V1__ItemResult__HeadersEntry *entries = NULL, **entry_ptrs = NULL;
    Google__Protobuf__Value *json = NULL;

    r.id = (char *)in->id;
    r.index = in->index;
    r.state = in->state;
    r.attempts = in->attempts;
    r.sequence = in->sequence;
    if (in->start_ns) {
        pbtime_timestamp_set(&start, in->start_ns);
        pbtime_timestamp_set(&end, in->end_ns);
        pbtime_duration_set(&dur, in->end_ns - in->start_ns);
        r.start_time = &start;
        r.end_time = &end;
        r.duration = &dur;
    }
    const target_response *resp = in->resp;
    if (resp && resp->http_status) {
        r.http_status = resp->http_status;
        r.body.data = resp->body;
        r.body.len = resp->body_len;
        r.body_truncated = resp->body_truncated;
        if (resp->n_headers) {
            entries = calloc(resp->n_headers, sizeof *entries);
            entry_ptrs = calloc(resp->n_headers, sizeof *entry_ptrs);
            if (entries && entry_ptrs) {
                /* A map: a repeated header keeps its last value, as protobuf maps do. */
                for (size_t i = 0; i < resp->n_headers; i++) {
                    batch__v1__item_result__headers_entry__init(&entries[i]);
                    entries[i].key = resp->headers[i].name;
                    entries[i].value = resp->headers[i].value;
                    entry_ptrs[i] = &entries[i];
                }
                r.n_headers = resp->n_headers;
                r.headers = entry_ptrs;
            }
        }
        if (resp->body_len && !resp->body_truncated && is_json_type(resp->content_type)) {
            json = pbvalue_parse((const char *)resp->body, resp->body_len);
            r.json = json;
        }
    }
    if (in->state != BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED) {
        err.code = in->code;
        err.message = (char *)(in->message ? in->message : "");
        r.error = &err;
    }
    size_t len = protobuf_c_message_get_packed_size(&r.base);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(&r.base, GRPC_SLICE_START_PTR(s));
    free(entries);
    free(entry_ptrs);
    if (json)
        protobuf_c_message_free_unpacked(&json->base, NULL);
    return s;
}
