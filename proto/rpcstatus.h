/* Rich gRPC errors: a status code, a short message and google.rpc error details
 * (BadRequest, QuotaFailure, RetryInfo, ErrorInfo), packed as the google.rpc.Status
 * that travels in the grpc-status-details-bin trailer. */
#ifndef BATCHD_RPCSTATUS_H
#define BATCHD_RPCSTATUS_H

#include <grpc/status.h>
#include <stddef.h>
#include <stdint.h>

#include "google/rpc/status.pb-c.h"

/* ErrorInfo.domain of every error batchd raises. */
#define RPCSTATUS_DOMAIN "batchd"

/* The trailer carrying the details must fit the peer's metadata limit (8 KiB by default
 * in gRPC core, counted after base64): details beyond this many packed bytes are dropped
 * and counted in a last BadRequest entry instead. */
#define RPCSTATUS_DETAILS_BUDGET 4096

typedef struct rpcstatus rpcstatus;

/* A new status; fmt gives the message (kept short: it travels in a header). NULL on ENOMEM.
 * Free with rpcstatus_free. */
rpcstatus *rpcstatus_new(grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rpcstatus_free(rpcstatus *st);

grpc_status_code rpcstatus_code(const rpcstatus *st);
const char *rpcstatus_message(const rpcstatus *st);
void rpcstatus_set_message(rpcstatus *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a google.rpc.BadRequest field violation (all of them share one BadRequest). */
void rpcstatus_field_violation(rpcstatus *st, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t rpcstatus_violation_count(const rpcstatus *st);
/* Appends a google.rpc.QuotaFailure violation. */
void rpcstatus_quota_violation(rpcstatus *st, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets google.rpc.RetryInfo.retry_delay. */
void rpcstatus_retry_after(rpcstatus *st, int64_t delay_ns);
/* Sets google.rpc.ErrorInfo {reason, domain "batchd"}; metadata pairs may follow with
 * rpcstatus_error_metadata. reason is a stable UPPER_SNAKE_CASE string. */
void rpcstatus_error_info(rpcstatus *st, const char *reason);
void rpcstatus_error_metadata(rpcstatus *st, const char *key, const char *value);
const char *rpcstatus_reason(const rpcstatus *st);

/* Packs the google.rpc.Status (code, message, details). Caller frees. NULL on ENOMEM. */
uint8_t *rpcstatus_pack(const rpcstatus *st, size_t *len);

/* Client side: decodes the details of a packed google.rpc.Status. Returns NULL if the
 * bytes are not a Status. Free with google__rpc__status__free_unpacked(s, NULL). */
Google__Rpc__Status *rpcstatus_unpack(const uint8_t *data, size_t len);
/* Unpacks the detail at any if its type URL names desc's message, else NULL. Free with
 * protobuf_c_message_free_unpacked. */
struct ProtobufCMessage *rpcstatus_unpack_detail(const Google__Protobuf__Any *any,
                                                 const struct ProtobufCMessageDescriptor *desc);

#endif
