/* Private to the pbjson*.c files, the protobuf JSON mapping of pbjson.h: the conversion state,
 * the error paths, and the functions one file of the module calls in another (pbjson__). */
#ifndef BATCHD_PBJSON_INT_H
#define BATCHD_PBJSON_INT_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pbjson.h"

#define MEMBER(msg, off) ((void *)((char *)(msg) + (off)))
#define CMEMBER(msg, off) ((const void *)((const char *)(msg) + (off)))

/* ---- the field model (pbjson.c) ----------------------------------------------------- */

size_t pbjson__value_size(ProtobufCType type);
bool pbjson__is_pointer_type(ProtobufCType type);
bool pbjson__is_oneof(const ProtobufCFieldDescriptor *f);
/* Whether the repeated field f of parent is a map (a repeated field of entry messages). */
bool pbjson__is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f);
/* The field named key, by its .proto name or its lowerCamelCase JSON name; NULL if none. */
const ProtobufCFieldDescriptor *pbjson__find_field(const ProtobufCMessageDescriptor *d,
                                                   const char *key);
/* The lowerCamelCase JSON name of name into out, which has room for strlen(name) + 1. */
void pbjson__json_name_write(const char *name, char *out);

enum wkt {
    WKT_NONE,
    WKT_ANY,
    WKT_DURATION,
    WKT_TIMESTAMP,
    WKT_VALUE,
    WKT_STRUCT,
    WKT_LIST_VALUE,
    WKT_FIELD_MASK,
    WKT_WRAPPER,
};

/* Which well-known type d is, if any: each has a special JSON form. */
enum wkt pbjson__wkt_of(const ProtobufCMessageDescriptor *d);

/* ---- paths and errors (pbjson.c) ---------------------------------------------------- */

enum path_kind { PATH_FIELD, PATH_KEY, PATH_INDEX };

/* One step from the root to the value being converted. Steps live on the C stack of the
 * recursion, each pointing at its parent (NULL: the root); keys are borrowed from the JSON
 * being parsed or the message being printed. */
struct path {
    const struct path *up;
    enum path_kind kind;
    const char *key;
    size_t index;
};

/* The state of one conversion, either direction. */
typedef struct conv {
    const pbjson_options *opt;
    unsigned max_depth;
    char *err; /* the first failure: it is the cause, later ones are its consequences */
    /* The failing path, root first, kept for pbjson_parse_text to find in the text. */
    struct path *err_steps;
    size_t n_err_steps;
    bool err_at_key;
} conv;

/* len bytes at s as a JSON-style string literal for an error message, cut when long;
 * malloc'd, NULL on ENOMEM. */
char *pbjson__quote(const char *s, size_t len);
/* Records the failure "path: reason" in c unless one is recorded already. at_key: the member
 * name is at fault (an unknown or repeated field), not its value. */
__attribute__((format(printf, 4, 5)))
void pbjson__fail(conv *c, const struct path *p, bool at_key, const char *fmt, ...);
void pbjson__fail_oom(conv *c, const struct path *p);
/* "expected <expected>, got <the kind of j>". */
void pbjson__fail_type(conv *c, const struct path *p, const char *expected, const json_t *j);

static inline bool pbjson__is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* ---- bytes (pbjson_base64.c) -------------------------------------------------------- */

/* Standard base64 with padding; malloc'd, NUL-terminated, its length in *out_len. NULL on
 * ENOMEM. */
char *pbjson__base64_encode(const uint8_t *data, size_t len, size_t *out_len);
/* Decodes len characters at s (either alphabet, padding optional) into out, which then owns
 * a malloc'd buffer (NULL when empty). 0, or -1 after pbjson__fail. */
int pbjson__parse_base64(conv *c, const struct path *p, const char *s, size_t len,
                         ProtobufCBinaryData *out);

/* ---- parsing (pbjson_parse.c) ------------------------------------------------------- */

/* pbjson__parse_value results. SKIPPED: an unknown enum name under ignore_unknown_fields. */
enum { PARSED = 0, FAILED = -1, SKIPPED = 1 };

/* j as a new message of type d at nesting level depth (the root is 1), or NULL after
 * pbjson__fail. The result is freed with protobuf_c_message_free_unpacked(m, NULL). */
ProtobufCMessage *pbjson__parse_message(conv *c, const ProtobufCMessageDescriptor *d,
                                        const json_t *j, const struct path *p, unsigned depth);
/* As pbjson__parse_message for a regular message (a JSON object of fields), without the
 * well-known types' forms. in_any: skip the "@type" member. */
ProtobufCMessage *pbjson__parse_object(conv *c, const ProtobufCMessageDescriptor *d,
                                       const json_t *j, const struct path *p, unsigned depth,
                                       bool in_any);
/* A new initialised message of type d, or NULL after pbjson__fail_oom. */
ProtobufCMessage *pbjson__new_message(conv *c, const struct path *p,
                                      const ProtobufCMessageDescriptor *d);
/* One value of f from j into dst: PARSED, SKIPPED, or FAILED after pbjson__fail. */
int pbjson__parse_value(conv *c, const ProtobufCFieldDescriptor *f, const json_t *j,
                        const struct path *p, unsigned depth, void *dst);
/* Marks f as holding a value in msg (oneof case or proto2 has_). */
void pbjson__mark_present(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f);

/* ---- printing (pbjson_print.c) ------------------------------------------------------ */

/* m (borrowed) as a new jansson value, or NULL after pbjson__fail. */
json_t *pbjson__print_message(conv *c, const ProtobufCMessage *m, const struct path *p,
                              unsigned depth);
/* Adds the members of the regular message m to obj; 0, or -1 after pbjson__fail. */
int pbjson__print_fields(conv *c, const ProtobufCMessage *m, const struct path *p,
                         unsigned depth, json_t *obj);

/* ---- the well-known types (pbjson_wkt.c) -------------------------------------------- */

/* Text of a Duration ("-1.5s") or a Timestamp (RFC 3339, UTC) into buf; -1 when the value
 * is out of the type's range. */
int pbjson__duration_to_text(int64_t seconds, int32_t nanos, char *buf, size_t size);
int pbjson__timestamp_to_text(int64_t seconds, int32_t nanos, char *buf, size_t size);

/* The parsers of the special forms, called by pbjson__parse_message for the wkt it found;
 * NULL after pbjson__fail. */
ProtobufCMessage *pbjson__parse_duration(conv *c, const json_t *j, const struct path *p);
ProtobufCMessage *pbjson__parse_timestamp(conv *c, const json_t *j, const struct path *p);
ProtobufCMessage *pbjson__parse_struct_kind(conv *c, enum wkt kind, const json_t *j,
                                            const struct path *p, unsigned depth);
ProtobufCMessage *pbjson__parse_any(conv *c, const json_t *j, const struct path *p,
                                    unsigned depth);
ProtobufCMessage *pbjson__parse_field_mask(conv *c, const ProtobufCMessageDescriptor *d,
                                           const json_t *j, const struct path *p);
ProtobufCMessage *pbjson__parse_wrapper(conv *c, const ProtobufCMessageDescriptor *d,
                                        const json_t *j, const struct path *p, unsigned depth);

/* The printers of the special forms, called by pbjson__print_message; NULL after
 * pbjson__fail. */
json_t *pbjson__print_struct_kind(conv *c, enum wkt kind, const ProtobufCMessage *m,
                                  const struct path *p, unsigned depth);
json_t *pbjson__print_any(conv *c, const ProtobufCMessage *m, const struct path *p,
                          unsigned depth);
json_t *pbjson__print_field_mask(conv *c, const ProtobufCMessage *m, const struct path *p);

/* ---- positions in the text (pbjson_position.c) -------------------------------------- */

/* Byte offset in text (valid JSON, len bytes) of the value at the end of steps, or of its
 * member name when at_key; false when the path is not found. */
bool pbjson__locate(const char *text, size_t len, const struct path *steps, size_t n,
                    bool at_key, size_t *offset);
/* The 1-based line and column (in characters) of offset in text. */
void pbjson__position_at(const char *text, size_t offset, pbjson_position *pos);

#endif
