/* libFuzzer target: google.protobuf.Value from untrusted JSON text (proto/pbvalue.h), the
 * form an operation's "json" body takes. Whatever parses must convert back to JSON: a Value
 * built from JSON holds no NaN, no infinity and no unset kind, and nests no deeper than
 * the parser allowed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "pbvalue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Google__Protobuf__Value *v = pbvalue_parse((const char *)data, size);
    if (v == NULL)
        return 0;
    const char *why = NULL;
    json_t *j = pbvalue_to_json(v, &why);
    if (j == NULL) {
        fprintf(stderr, "fuzz_value: a parsed Value does not convert back: %s\n", why ? why : "");
        abort();
    }
    json_decref(j);
    protobuf_c_message_free_unpacked(&v->base, NULL);
    return 0;
}
