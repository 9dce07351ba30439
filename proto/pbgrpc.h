/* protobuf-c messages <-> gRPC core byte buffers, and the wire helpers that let a
 * packed message be reused inside another one without unpacking it. */
#ifndef BATCHD_PBGRPC_H
#define BATCHD_PBGRPC_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Packs msg into a new byte buffer. The caller owns the result
 * (grpc_byte_buffer_destroy). Never NULL: allocation failure aborts inside gRPC. */
grpc_byte_buffer *pbgrpc_pack(const ProtobufCMessage *msg);

/* A byte buffer holding a copy of len bytes at data. Caller owns it. */
grpc_byte_buffer *pbgrpc_from_bytes(const void *data, size_t len);

/* Deepest message nesting accepted from the wire. protobuf-c's unpack recurses once per
 * level with ~1 KiB of stack and has no limit of its own, so a small request of nested
 * google.protobuf.Values could overflow the stack; such input is refused before unpacking.
 * 256 leaves room for JSON bodies nested PBVALUE_MAX_DEPTH deep (3 messages per level). */
#define PBGRPC_MAX_DEPTH 256

/* Checks that data is well-formed wire format whose embedded messages (as desc describes
 * them) nest at most max_depth deep. Returns 0, or -1 when too deep or malformed. */
int pbgrpc_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                       unsigned max_depth);

/* Unpacks bb (borrowed; NULL means an empty message) as desc. Returns NULL when the bytes
 * are not a valid message or nest deeper than PBGRPC_MAX_DEPTH. The caller frees the result
 * with protobuf_c_message_free_unpacked. */
ProtobufCMessage *pbgrpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb);

/* Packs msg into a malloc'd buffer; *len gets its size. Caller frees. NULL on ENOMEM. */
uint8_t *pbgrpc_pack_bytes(const ProtobufCMessage *msg, size_t *len);

/* A growable byte string used to write protobuf wire format by hand. */
typedef struct pbwire {
    uint8_t *data;
    size_t len, cap;
    int oom;           /* set once an allocation failed; every later append is a no-op */
} pbwire;

void pbwire_varint(pbwire *w, uint64_t v);
/* Field `field` as a varint (wire type 0). */
void pbwire_uint_field(pbwire *w, uint32_t field, uint64_t v);
/* Field `field` as length-delimited bytes (wire type 2): a string, bytes or an embedded,
 * already packed message. */
void pbwire_bytes_field(pbwire *w, uint32_t field, const void *data, size_t len);
void pbwire_raw(pbwire *w, const void *data, size_t len);
/* Appends msg packed as embedded message field `field`. */
void pbwire_message_field(pbwire *w, uint32_t field, const ProtobufCMessage *msg);
void pbwire_free(pbwire *w);

#endif
