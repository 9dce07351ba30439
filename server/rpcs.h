/* The RPC handler families and their hooks into the app's lifecycle. */
#ifndef BATCHD_RPCS_H
#define BATCHD_RPCS_H

#include "app.h"

/* rpc_batch.c: GetBatch, ListBatches. */
void rpc_batch_register(app *a);

/* rpc_submit.c: SubmitBatch, CancelBatch. */
void rpc_submit_register(app *a);
/* Answers every call still waiting for a batch with the batch as it stands (shutdown). */
void rpc_batch_release_waiters(app *a);

/* rpc_results.c: ListResults, ListOperations. */
void rpc_results_register(app *a);

/* rpc_watch.c: WatchBatch. */
void rpc_watch_register(app *a);
/* Sends what the watchers marked dirty since the last loop turn. */
void rpc_watch_flush(app *a);
/* Ends every watch: final event and OK where the batch ended, else UNAVAILABLE (shutdown). */
void rpc_watch_release_all(app *a);

/* rpc_health.c: grpc.health.v1.Health Check and Watch. Starts SERVING. */
void rpc_health_register(app *a);
/* Changes what Health reports for "" and batch.v1.BatchService; every Watch sees it. */
void rpc_health_set_serving(app *a, int serving);
/* Ends every Watch (shutdown): the latest status, then UNAVAILABLE with RetryInfo. */
void rpc_health_release_all(app *a);

/* rpc_reflection.c: grpc.reflection.v1 and v1alpha ServerReflectionInfo. Indexes the
 * embedded descriptor set; -1 with a message in err if it cannot. */
int rpc_reflection_register(app *a, char *err, size_t errlen);
/* Ends every reflection stream with UNAVAILABLE (shutdown). No-op without reflection. */
void rpc_reflection_release_all(app *a);
/* Frees the index, after the rpc server (its calls are gone). */
void rpc_reflection_free(app *a);

/* Unpacks a request, or fails the call with INVALID_ARGUMENT and returns NULL. */
ProtobufCMessage *rpc_unpack_request(rpc_call *c, const ProtobufCMessageDescriptor *desc,
                                     grpc_byte_buffer *req);
/* Looks up a batch by id, or fails the call (INVALID_ARGUMENT when empty, NOT_FOUND) and
 * returns NULL. */
batch *rpc_find_batch(rpc_call *c, const char *id);

#endif
