/* Response messages composed from already packed parts (a batch snapshot, stored item
 * results) as multi-slice byte buffers: nothing is copied or packed again. */
#ifndef BATCHD_MSG_H
#define BATCHD_MSG_H

#include <grpc/byte_buffer.h>
#include <stddef.h>

#include "batch.h"

/* A byte buffer holding exactly the bytes of s (a new reference is taken). */
grpc_byte_buffer *msg_from_slice(grpc_slice s);
/* BatchEvent{sequence, batch = b's snapshot}. */
grpc_byte_buffer *msg_event_batch(batch *b);
/* BatchEvent{sequence = item's, item = its result}. */
grpc_byte_buffer *msg_event_item(const batch *b, uint32_t index);
/* BatchEvent{sequence = seq, item = result} for a result read back from the store. */
grpc_byte_buffer *msg_event_result(uint64_t seq, grpc_slice result);
/* OperationRecord{index, state, operation = op (packed Operation bytes)}. */
grpc_byte_buffer *msg_operation_record(uint32_t index, int state, const uint8_t *op, size_t op_len);
/* SubmitBatchResponse{batch, results of ended items in input order while they fit in
 * budget bytes, results_truncated}. with_results = 0 leaves results out. */
grpc_byte_buffer *msg_submit_response(batch *b, int with_results, size_t budget);

#endif
