/* google.protobuf.Value / Struct / ListValue <-> jansson values. */
#ifndef BATCHD_PBVALUE_H
#define BATCHD_PBVALUE_H

#include <jansson.h>
#include <stddef.h>

#include "google/protobuf/struct.pb-c.h"

/* Deepest nesting accepted in either direction; deeper input is refused, not recursed into. */
#define PBVALUE_MAX_DEPTH 64

/* Converts v to a new jansson reference (caller json_decref's it). Whole numbers within
 * 2^53 become JSON integers. Returns NULL, with *why set to a static reason, when v holds
 * NaN or an infinity, a Value with no kind, or nests deeper than PBVALUE_MAX_DEPTH. */
json_t *pbvalue_to_json(const Google__Protobuf__Value *v, const char **why);

/* Converts j to a newly allocated Value tree that protobuf_c_message_free_unpacked(v, NULL)
 * frees. NULL on ENOMEM or nesting deeper than PBVALUE_MAX_DEPTH. */
Google__Protobuf__Value *pbvalue_from_json(const json_t *j);

/* Parses len bytes of JSON text into a Value tree (as pbvalue_from_json), or NULL when
 * the text is not JSON. */
Google__Protobuf__Value *pbvalue_parse(const char *text, size_t len);

#endif
