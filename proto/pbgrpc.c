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

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p == end)
            return -1;
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

int pbgrpc_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                       unsigned max_depth)
{
    if (max_depth == 0)
        return -1;
    const uint8_t *p = data, *end = data + len;
    while (p < end) {
        uint64_t key, v;
        if (read_varint(&p, end, &key) < 0)
            return -1;
        switch (key & 7) {
        case 0:
            if (read_varint(&p, end, &v) < 0)
                return -1;
            break;
        case 1:
            if (end - p < 8)
                return -1;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return -1;
            p += 4;
            break;
        case 2: {
            if (read_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
                return -1;
            const ProtobufCFieldDescriptor *f =
                desc ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3)) : NULL;
            /* Only fields known to hold messages nest; unknown ones are skipped whole. */
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                pbgrpc_check_depth(f->descriptor, p, (size_t)v, max_depth - 1) < 0)
                return -1;
            p += v;
            break;
        }
        default: /* groups (3, 4) are not proto3 */
            return -1;
        }
    }
    return 0;
}

ProtobufCMessage *pbgrpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
    if (bb == NULL)
        return protobuf_c_message_unpack(desc, NULL, 0, (const uint8_t *)"");
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    ProtobufCMessage *msg = NULL;
    if (pbgrpc_check_depth(desc, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), PBGRPC_MAX_DEPTH) == 0)
        msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
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
