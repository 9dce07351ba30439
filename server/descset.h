/* An index over a protoc-made FileDescriptorSet, for server reflection: file name -> file,
 * fully-qualified symbol -> file, (extendee, number) -> file, and the transitive dependencies
 * of a file. Files are answered as the exact bytes protoc wrote (slices of the set), so
 * options, source info and fields this code does not know all reach the client intact. */
#ifndef BATCHD_DESCSET_H
#define BATCHD_DESCSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct descset descset;

/* What a symbol names. Reflection only needs to tell messages apart (extension numbers are
 * asked of message types); the rest is kept for messages and logs. */
enum descset_kind {
    DESCSET_MESSAGE,
    DESCSET_ENUM,
    DESCSET_ENUM_VALUE,
    DESCSET_FIELD,
    DESCSET_ONEOF,
    DESCSET_EXTENSION,
    DESCSET_SERVICE,
    DESCSET_METHOD,
};

/* Indexes the FileDescriptorSet in data. data is borrowed and must outlive the index: answers
 * point into it. Fails (NULL, message in err) on bytes that are not a FileDescriptorSet, a
 * dependency missing from the set (it was not made with --include_imports), or a symbol
 * defined twice. Free with descset_free. */
descset *descset_new(const uint8_t *data, size_t len, char *err, size_t errlen);
void descset_free(descset *d);

size_t descset_n_files(const descset *d);
/* The serialized FileDescriptorProto of file i, as protoc wrote it (borrowed from data). */
const uint8_t *descset_file_bytes(const descset *d, size_t i, size_t *len);
/* FileDescriptorProto.name of file i (borrowed). */
const char *descset_file_name(const descset *d, size_t i);

/* Each returns the index of the file, or -1 when the set has none. */
int descset_find_file(const descset *d, const char *name);
/* symbol is fully qualified ("batch.v1.Operation", "batch.v1.BatchService.SubmitBatch",
 * "google.rpc.BadRequest.FieldViolation"); a leading '.' is accepted. kind may be NULL. */
int descset_find_symbol(const descset *d, const char *symbol, enum descset_kind *kind);
int descset_find_extension(const descset *d, const char *extendee, int32_t number);

/* The extension numbers declared for message type `type` anywhere in the set, into *numbers
 * (malloc'd, caller frees; NULL when there are none) and *n. Returns 0, -1 when type is not
 * a message of the set, -2 when out of memory. */
int descset_extension_numbers(const descset *d, const char *type, int32_t **numbers, size_t *n);

/* File i and every file it depends on, transitively, each once (*n of them; borrowed): i
 * first, because clients such as grpcurl take the first file of a reflection answer as the one
 * asked for (the C++ and Go servers send it first too); then the dependencies, each after its
 * own, so a client may add them to a pool in that order. Computed once, in descset_new. */
const size_t *descset_closure(const descset *d, size_t i, size_t *n);

#endif
