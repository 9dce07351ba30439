/* pbjson_roundtrip: converts one message between JSON and the protobuf wire format through
 * proto/pbjson.c, for the interop test against python's json_format
 * (tests/py/test_pbjson_interop.py).
 *
 *   pbjson_roundtrip [--from=json|binary] [--to=json|binary] [--original-names]
 *                    [--emit-defaults] [--enums-as-ints] [--ignore-unknown] [--max-depth=N]
 *
 * stdin: the full name of the message type on the first line, then the message (JSON text,
 * or wire bytes with --from=binary). stdout: the message as compact JSON and a newline, or
 * wire bytes with --to=binary. Exit status: 0 done, 1 input refused (the reason on stderr),
 * 2 usage error. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/v1/batch.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/field_mask.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "pbjson.h"
#include "pbjson_kinds.pb-c.h"
#include "pbjson_legacy.pb-c.h"

/* Every type the test may name, at the top level or inside an Any. */
static const ProtobufCMessageDescriptor *const types[] = {
    &batch__v1__operation__descriptor,
    &batch__v1__batch_options__descriptor,
    &batch__v1__submit_batch_request__descriptor,
    &batch__v1__submit_batch_response__descriptor,
    &batch__v1__batch__descriptor,
    &batch__v1__counts__descriptor,
    &batch__v1__item_result__descriptor,
    &batch__v1__batch_event__descriptor,
    &batch__v1__watch_batch_request__descriptor,
    &batch__v1__get_batch_request__descriptor,
    &batch__v1__cancel_batch_request__descriptor,
    &batch__v1__list_batches_request__descriptor,
    &batch__v1__list_batches_response__descriptor,
    &batch__v1__list_results_request__descriptor,
    &google__rpc__status__descriptor,
    &google__rpc__error_info__descriptor,
    &google__rpc__retry_info__descriptor,
    &google__rpc__debug_info__descriptor,
    &google__rpc__quota_failure__descriptor,
    &google__rpc__precondition_failure__descriptor,
    &google__rpc__bad_request__descriptor,
    &google__rpc__request_info__descriptor,
    &google__rpc__resource_info__descriptor,
    &google__rpc__help__descriptor,
    &google__rpc__localized_message__descriptor,
    &google__protobuf__any__descriptor,
    &google__protobuf__duration__descriptor,
    &google__protobuf__timestamp__descriptor,
    &google__protobuf__struct__descriptor,
    &google__protobuf__value__descriptor,
    &google__protobuf__list_value__descriptor,
    &google__protobuf__empty__descriptor,
    &google__protobuf__field_mask__descriptor,
    &google__protobuf__double_value__descriptor,
    &google__protobuf__float_value__descriptor,
    &google__protobuf__int64_value__descriptor,
    &google__protobuf__uint64_value__descriptor,
    &google__protobuf__int32_value__descriptor,
    &google__protobuf__uint32_value__descriptor,
    &google__protobuf__bool_value__descriptor,
    &google__protobuf__string_value__descriptor,
    &google__protobuf__bytes_value__descriptor,
    &pbjson__test__kinds__descriptor,
    &pbjson__test__legacy__descriptor,
};
#define N_TYPES (sizeof types / sizeof *types)

struct args {
    bool from_binary, to_binary;
    pbjson_options opt;
};

/* The option table: each flag sets one field of struct args. */
static const struct flag {
    const char *name;
    size_t offset;
} flags[] = {
    {"--from=binary", offsetof(struct args, from_binary)},
    {"--to=binary", offsetof(struct args, to_binary)},
    {"--original-names", offsetof(struct args, opt.original_names)},
    {"--emit-defaults", offsetof(struct args, opt.emit_defaults)},
    {"--enums-as-ints", offsetof(struct args, opt.enums_as_ints)},
    {"--ignore-unknown", offsetof(struct args, opt.ignore_unknown_fields)},
};

static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->opt.any_types = types;
    a->opt.n_any_types = N_TYPES;
    for (int i = 1; i < argc; i++) {
        bool known = strcmp(argv[i], "--from=json") == 0 || strcmp(argv[i], "--to=json") == 0;
        for (size_t k = 0; !known && k < sizeof flags / sizeof *flags; k++) {
            if (strcmp(argv[i], flags[k].name) == 0) {
                *(bool *)((char *)a + flags[k].offset) = true;
                known = true;
            }
        }
        if (!known && strncmp(argv[i], "--max-depth=", 12) == 0) {
            char *end;
            unsigned long n = strtoul(argv[i] + 12, &end, 10);
            if (*end == '\0' && n > 0 && n < 100000) {
                a->opt.max_depth = (unsigned)n;
                known = true;
            }
        }
        if (!known) {
            fprintf(stderr, "pbjson_roundtrip: unknown option %s\n", argv[i]);
            return -1;
        }
    }
    return 0;
}

static const ProtobufCMessageDescriptor *find_type(const char *name)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(types[i]->name, name) == 0)
            return types[i];
    return NULL;
}

static char *read_all(FILE *in, size_t *len)
{
    size_t cap = 65536;
    char *buf = malloc(cap);
    *len = 0;
    while (buf != NULL) {
        *len += fread(buf + *len, 1, cap - *len, in);
        if (*len < cap)
            return ferror(in) ? (free(buf), NULL) : buf;
        char *bigger = realloc(buf, cap *= 2);
        if (bigger == NULL)
            free(buf);
        buf = bigger;
    }
    return NULL;
}

static int convert(const struct args *a, const char *input, size_t len)
{
    const char *nl = memchr(input, '\n', len);
    if (nl == NULL) {
        fprintf(stderr, "pbjson_roundtrip: expected a type name on the first line\n");
        return 2;
    }
    char name[256];
    size_t name_len = (size_t)(nl - input);
    if (name_len >= sizeof name) {
        fprintf(stderr, "pbjson_roundtrip: type name too long\n");
        return 2;
    }
    memcpy(name, input, name_len);
    name[name_len] = '\0';
    const ProtobufCMessageDescriptor *desc = find_type(name);
    if (desc == NULL) {
        fprintf(stderr, "pbjson_roundtrip: unknown message type %s\n", name);
        return 2;
    }
    const char *body = nl + 1;
    size_t body_len = len - name_len - 1;

    int status = 1;
    char *err = NULL, *text = NULL;
    uint8_t *packed = NULL;
    ProtobufCMessage *msg;
    if (a->from_binary) {
        msg = protobuf_c_message_unpack(desc, NULL, body_len, (const uint8_t *)body);
        if (msg == NULL)
            fprintf(stderr, "pbjson_roundtrip: the input is not a valid %s\n", desc->name);
    } else {
        pbjson_position pos;
        msg = pbjson_parse_text(desc, body, body_len, &a->opt, &err, &pos);
        if (msg == NULL)
            fprintf(stderr, "pbjson_roundtrip: line %d, column %d: %s\n", pos.line, pos.column,
                    err ? err : "out of memory");
    }
    if (msg == NULL)
        goto done;

    if (a->to_binary) {
        size_t n = protobuf_c_message_get_packed_size(msg);
        if ((packed = malloc(n ? n : 1)) == NULL)
            goto done;
        protobuf_c_message_pack(msg, packed);
        if (fwrite(packed, 1, n, stdout) != n)
            goto done;
    } else {
        text = pbjson_print_text(msg, &a->opt, JSON_COMPACT, &err);
        if (text == NULL) {
            fprintf(stderr, "pbjson_roundtrip: %s\n", err ? err : "out of memory");
            goto done;
        }
        if (printf("%s\n", text) < 0)
            goto done;
    }
    status = fflush(stdout) == 0 ? 0 : 1;

done:
    free(packed);
    free(text);
    free(err);
    if (msg != NULL)
        protobuf_c_message_free_unpacked(msg, NULL);
    return status;
}

int main(int argc, char **argv)
{
    struct args a;
    if (parse_args(argc, argv, &a) < 0)
        return 2;
    size_t len;
    char *input = read_all(stdin, &len);
    if (input == NULL) {
        perror("pbjson_roundtrip: stdin");
        return 2;
    }
    int status = convert(&a, input, len);
    free(input);
    return status;
}
