/* Hand-composed protobuf messages over shared slices (see msg.h). Field numbers are those
 * of proto/batch/v1/batch.proto. */
#include "msg.h"

#include <stdlib.h>

#include "pbgrpc.h"

enum {
    BATCH_EVENT_SEQUENCE = 1,
    BATCH_EVENT_BATCH = 2,
    BATCH_EVENT_ITEM = 3,
    SUBMIT_RESPONSE_BATCH = 1,
    SUBMIT_RESPONSE_RESULTS = 2,
    SUBMIT_RESPONSE_TRUNCATED = 3,
};

/* A field's key and length prefix for an embedded message of len bytes. */
static grpc_slice prefix(uint32_t field, size_t len)
{
    pbwire w = {0};
    pbwire_varint(&w, (uint64_t)field << 3 | 2);
    pbwire_varint(&w, len);
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)w.data, w.len); /* inline: <= 23 B */
    pbwire_free(&w);
    return s;
}

grpc_byte_buffer *msg_from_slice(grpc_slice s)
{
    return grpc_raw_byte_buffer_create(&s, 1);
}

static grpc_byte_buffer *event(uint64_t seq, uint32_t field, grpc_slice body)
{
    pbwire w = {0};
    if (seq)
        pbwire_uint_field(&w, BATCH_EVENT_SEQUENCE, seq);
    pbwire_varint(&w, (uint64_t)field << 3 | 2);
    pbwire_varint(&w, GRPC_SLICE_LENGTH(body));
    grpc_slice parts[2] = {grpc_slice_from_copied_buffer((const char *)w.data, w.len), body};
    pbwire_free(&w);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(parts, 2);
    grpc_slice_unref(parts[0]);
    return bb;
}

grpc_byte_buffer *msg_event_batch(batch *b)
{
    grpc_slice snap = batch_snapshot(b);
    grpc_byte_buffer *bb = event(b->last_sequence, BATCH_EVENT_BATCH, snap);
    grpc_slice_unref(snap);
    return bb;
}

grpc_byte_buffer *msg_event_item(const batch *b, uint32_t index)
{
    const item *it = &b->items[index];
    return event(it->seq, BATCH_EVENT_ITEM, it->result);
}

grpc_byte_buffer *msg_event_result(uint64_t seq, grpc_slice result)
{
    return event(seq, BATCH_EVENT_ITEM, result);
}

grpc_byte_buffer *msg_operation_record(uint32_t index, int state, const uint8_t *op, size_t op_len)
{
    enum { RECORD_INDEX = 1, RECORD_STATE = 2, RECORD_OPERATION = 3 };
    pbwire w = {0};
    if (index)
        pbwire_uint_field(&w, RECORD_INDEX, index);
    if (state)
        pbwire_uint_field(&w, RECORD_STATE, (uint64_t)state);
    pbwire_bytes_field(&w, RECORD_OPERATION, op, op_len);
    grpc_byte_buffer *bb = w.oom ? NULL : pbgrpc_from_bytes(w.data, w.len);
    pbwire_free(&w);
    return bb;
}

grpc_byte_buffer *msg_submit_response(batch *b, int with_results, size_t budget)
{
    uint32_t ended = with_results ? (uint32_t)b->last_sequence : 0;
    size_t n = 0;
    grpc_slice *parts = malloc((2 * (size_t)ended + 3) * sizeof *parts);
    if (parts == NULL)
        return NULL;
    grpc_slice snap = batch_snapshot(b);
    size_t used = GRPC_SLICE_LENGTH(snap) + 8;
    parts[n++] = prefix(SUBMIT_RESPONSE_BATCH, GRPC_SLICE_LENGTH(snap));
    parts[n++] = snap;
    /* An evicted batch's results are in the store only: ListResults streams them. */
    int truncated = with_results && b->items == NULL && b->last_sequence > 0;
    for (uint32_t i = 0; with_results && b->items && i < b->total; i++) {
        const item *it = &b->items[i];
        if (!batch_item_state_ended(it->state))
            continue; /* not recorded (yet) */
        size_t len = GRPC_SLICE_LENGTH(it->result);
        if (used + len + 8 > budget) {
            truncated = 1;
            break;
        }
        used += len + 8;
        parts[n++] = prefix(SUBMIT_RESPONSE_RESULTS, len);
        parts[n++] = grpc_slice_ref(it->result);
    }
    if (truncated) {
        static const char flag[] = {SUBMIT_RESPONSE_TRUNCATED << 3, 1};
        parts[n++] = grpc_slice_from_copied_buffer(flag, sizeof flag);
    }
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(parts, n);
    for (size_t i = 0; i < n; i++)
        grpc_slice_unref(parts[i]);
    free(parts);
    return bb;
}
