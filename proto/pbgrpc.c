/* protobuf-c <-> grpc_byte_buffer, and hand-written wire format for composing
 * messages out of already packed parts (results are stored packed). */
#include "pbgrpc.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <stdlib.h>
#include <string.h>

grpc_byte_buffer *pbgrpc_pack(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s); /* the buffer took its own reference */
    return bb;
}

grpc_byte_buffer *pbgrpc_from_bytes(const void *data, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer(data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

ProtobufCMessage *pbgrpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
    if (bb == NULL)
        return protobuf_c_message_unpack(desc, NULL, 0, (const uint8_t *)"");
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s),
                                                      GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    grpc_byte_buffer_reader_destroy(&reader);
    return msg;
}

uint8_t *pbgrpc_pack_bytes(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *out = malloc(*len ? *len : 1);
    if (out)
        protobuf_c_message_pack(msg, out);
    return out;
}

static int pbwire_reserve(pbwire *w, size_t more)
{
    if (w->oom)
        return -1;
    if (w->len + more <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + more)
        cap *= 2;
    uint8_t *p = realloc(w->data, cap);
    if (p == NULL) {
        w->oom = 1;
        return -1;
    }
    w->data = p;
    w->cap = cap;
    return 0;
}

void pbwire_raw(pbwire *w, const void *data, size_t len)
{
    if (len == 0 || pbwire_reserve(w, len) < 0)
        return;
    memcpy(w->data + w->len, data, len);
    w->len += len;
}

void pbwire_varint(pbwire *w, uint64_t v)
{
    uint8_t buf[10];
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        buf[n++] = b | (v ? 0x80 : 0);
    } while (v);
    pbwire_raw(w, buf, n);
}

void pbwire_uint_field(pbwire *w, uint32_t field, uint64_t v)
{
    pbwire_varint(w, (uint64_t)field << 3);
    pbwire_varint(w, v);
}

void pbwire_bytes_field(pbwire *w, uint32_t field, const void *data, size_t len)
{
    pbwire_varint(w, (uint64_t)field << 3 | 2);
    pbwire_varint(w, len);
    pbwire_raw(w, data, len);
}

void pbwire_message_field(pbwire *w, uint32_t field, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    pbwire_varint(w, (uint64_t)field << 3 | 2);
    pbwire_varint(w, len);
    if (pbwire_reserve(w, len) < 0)
        return;
    protobuf_c_message_pack(msg, w->data + w->len);
    w->len += len;
}

void pbwire_free(pbwire *w)
{
    free(w->data);
    memset(w, 0, sizeof *w);
}
