/* The protobuf JSON mapping (https://protobuf.dev/programming-guides/proto3/#json) for any
 * protobuf-c message, driven by its descriptors, in both directions, over jansson values.
 *
 * Well-known types take their special forms: Duration "1.5s", Timestamp RFC 3339 (printed in
 * UTC with 0, 3, 6 or 9 fractional digits), Value/Struct/ListValue as plain JSON (through
 * pbvalue), Any as {"@type": url, ...}. google.protobuf.FieldMask and the wrappers
 * (Int32Value, ...) are not generated in this library; a program that links them gets their
 * forms too, recognised by full name. 64-bit integers print as strings, bytes as standard
 * base64, NaN and infinities as "NaN"/"Infinity"/"-Infinity", map keys as strings.
 * proto2 messages work too: optional fields print when set (has_ or pointer), required
 * fields must be present when parsing. Unknown fields kept from the wire are not printed. */
#ifndef BATCHD_PBJSON_H
#define BATCHD_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* Deepest message nesting accepted when max_depth is 0. The root message is level 1; every
 * nested message, and every JSON array or object inside a google.protobuf.Value, Struct or
 * ListValue, is one more level. Both directions refuse deeper input instead of recursing. */
#define PBJSON_DEFAULT_MAX_DEPTH 64

/* How to parse and print. A zeroed struct (or a NULL pointer) means the defaults of the
 * mapping: strict parsing, lowerCamelCase names, default values omitted, enums by name. */
typedef struct pbjson_options {
    /* Parse: skip object members that name no field, and enum names that name no value
     * (the field, element or map entry is then left out), instead of failing. */
    bool ignore_unknown_fields;
    /* Print: the field names of the .proto file (snake_case) instead of lowerCamelCase.
     * Parsing always accepts both. */
    bool original_names;
    /* Print: also fields without presence that hold their default value (0, "", false,
     * the enum's zero value, [] and {}). Message fields, oneof members and proto2 optional
     * fields are printed only when set, as protobuf's always_print_fields_with_no_presence. */
    bool emit_defaults;
    /* Print: enum values as numbers instead of names. */
    bool enums_as_ints;
    /* Both: see PBJSON_DEFAULT_MAX_DEPTH; 0 selects it. */
    unsigned max_depth;
    /* Both: the message types a google.protobuf.Any may hold, looked up by the full name at
     * the end of its type URL. Borrowed; must outlive the call. Searched before the built-in
     * table, which holds the well-known types of this library (Any, Duration, Timestamp,
     * Struct, Value, ListValue, Empty) and google.rpc.Status with the google.rpc error
     * details (ErrorInfo, RetryInfo, DebugInfo, QuotaFailure, PreconditionFailure,
     * BadRequest, RequestInfo, ResourceInfo, Help, LocalizedMessage). An Any of another
     * type is an error in both directions. */
    const ProtobufCMessageDescriptor *const *any_types;
    size_t n_any_types;
} pbjson_options;

/* Where in a JSON text an error was found. line and column are 1-based, the column counted
 * in characters (UTF-8 code points) as jansson does; offset is 0-based, in bytes. For a
 * syntax error this is what jansson reports (the end of the offending token); for a schema
 * error it is the start of the offending value, or of the member name for an unknown or
 * repeated field. All zero when unknown. */
typedef struct pbjson_position {
    int line;
    int column;
    size_t offset;
} pbjson_position;

/* Converts json (borrowed) to a new message of type desc. The result is allocated the way
 * protobuf_c_message_unpack allocates with the default allocator, so the caller frees it with
 * protobuf_c_message_free_unpacked(msg, NULL) (or the generated *__free_unpacked). opt may be
 * NULL. On failure returns NULL and, when err is not NULL, sets *err to a malloc'd message
 * (caller frees) that starts with the JSON path of the offending value, e.g.
 *   operations[3].timeout: invalid duration "5x" (expected e.g. "1.5s")
 * *err is NULL on success, and may be NULL on failure when memory ran out.
 * Integers given as JSON numbers are limited to jansson's json_int_t (int64): a uint64 above
 * INT64_MAX must be a string, as printers write it.
 * Field names may be given as lowerCamelCase or as in the .proto file. protobuf-c keeps no
 * json_name option: lowerCamelCase is always derived from the field name, as protoc does. */
ProtobufCMessage *pbjson_parse(const ProtobufCMessageDescriptor *desc, const json_t *json,
                               const pbjson_options *opt, char **err);

/* As pbjson_parse, from len bytes of JSON text (any JSON value at the top, so that a
 * Duration can be "1.5s"; duplicate member names are refused). On failure, *pos (when pos
 * is not NULL) tells where the error is; syntax errors read "invalid JSON: " and jansson's
 * text. */
ProtobufCMessage *pbjson_parse_text(const ProtobufCMessageDescriptor *desc, const char *text,
                                    size_t len, const pbjson_options *opt, char **err,
                                    pbjson_position *pos);

/* Converts msg (borrowed) to a new jansson value (caller json_decref's it): an object for
 * most messages, a string, array or other value for the well-known types that map to one.
 * Members come out in field-number order. On failure (a Timestamp or Duration out of range,
 * a NaN inside a Value, an Any of an unknown type, a string that is not UTF-8, nesting
 * beyond max_depth, ENOMEM) returns NULL and sets *err as pbjson_parse does. */
json_t *pbjson_print(const ProtobufCMessage *msg, const pbjson_options *opt, char **err);

/* As pbjson_print, then json_dumps with json_flags (e.g. JSON_COMPACT for NDJSON, or
 * JSON_INDENT(2)). Returns a NUL-terminated malloc'd string the caller free()s. Reals are
 * written by jansson with 17 significant digits: exact, if not always the shortest form. */
char *pbjson_print_text(const ProtobufCMessage *msg, const pbjson_options *opt,
                        size_t json_flags, char **err);

#endif
