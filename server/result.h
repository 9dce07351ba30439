/* Building an item's packed ItemResult, and the HTTP status -> gRPC code mapping. */
#ifndef BATCHD_RESULT_H
#define BATCHD_RESULT_H

#include <grpc/slice.h>
#include <grpc/status.h>
#include <stdint.h>

#include "target.h"

typedef struct result_input {
    const char *id;
    uint32_t index;
    int state;                       /* Batch__V1__ItemState (ended) */
    const target_response *resp;     /* the last attempt's response, or NULL */
    grpc_status_code code;           /* error code when not SUCCEEDED */
    const char *message;             /* error message when not SUCCEEDED */
    uint32_t attempts;
    int64_t start_ns, end_ns;        /* wall clock; start 0 if it never ran */
    uint64_t sequence;
} result_input;

/* Packs the ItemResult into a new slice (caller owns the reference). The body is parsed
 * into ItemResult.json when its content type says JSON and it was not truncated. */
grpc_slice result_build(const result_input *in);

/* gRPC code for a non-2xx HTTP status (400 INVALID_ARGUMENT, 404 NOT_FOUND, ...). */
grpc_status_code result_code_for_http(int http_status);
/* "Not Found" for 404, "" when unknown. */
const char *result_http_reason(int http_status);

#endif
