/* libFuzzer target: the protobuf JSON mapping (proto/pbjson.h) from untrusted text, as
 * batchctl reads its JSON and NDJSON input. Each input is parsed as a SubmitBatchRequest,
 * an Operation and a google.rpc.Status (Any, Duration, the error details), strictly and
 * then ignoring unknown fields. What parses is printed back with the default options and
 * with every printing option, and the printed text must parse and print back to itself:
 * the printer may not write what the parser refuses or reads differently. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/v1/batch.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: say which and stop, so that libFuzzer keeps the input. */
static void broken(const char *what, const ProtobufCMessageDescriptor *d, const char *detail)
{
    fprintf(stderr, "fuzz_pbjson: %s (%s): %s\n", what, d->name, detail ? detail : "");
    abort();
}

/* Prints m with opt, then checks that the text reads back as a message that prints the same. */
static void print_round_trip(const ProtobufCMessage *m, const pbjson_options *opt)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char *err = NULL;
    char *text = pbjson_print_text(m, opt, JSON_COMPACT, &err);
    if (text == NULL)
        broken("a parsed message does not print", d, err);
    ProtobufCMessage *again = pbjson_parse_text(d, text, strlen(text), opt, &err, NULL);
    if (again == NULL) {
        fprintf(stderr, "printed: %s\n", text);
        broken("printed text does not parse", d, err);
    }
    char *text2 = pbjson_print_text(again, opt, JSON_COMPACT, &err);
    if (text2 == NULL || strcmp(text, text2) != 0) {
        fprintf(stderr, "first:  %s\nsecond: %s\n", text, text2 ? text2 : "(failed)");
        broken("printing is not a fixed point", d, err);
    }
    free(text2);
    free(text);
    protobuf_c_message_free_unpacked(again, NULL);
}

static void parse_as(const ProtobufCMessageDescriptor *d, const char *text, size_t len)
{
    static const pbjson_options print_all = {.original_names = true, .emit_defaults = true,
                                             .enums_as_ints = true};
    pbjson_options opt = {0};
    char *err = NULL;
    pbjson_position pos;
    ProtobufCMessage *m = pbjson_parse_text(d, text, len, &opt, &err, &pos);
    if (m == NULL) {
        if (err == NULL)
            broken("a failed parse set no error", d, NULL);
        if (pos.offset > len)
            broken("the error position is past the end of the text", d, err);
        free(err);
        /* Only a refused input can differ when unknown fields are skipped. */
        opt.ignore_unknown_fields = true;
        m = pbjson_parse_text(d, text, len, &opt, &err, &pos);
        free(err);
        if (m == NULL)
            return;
    }
    print_round_trip(m, NULL);
    print_round_trip(m, &print_all);
    protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    parse_as(&batch__v1__submit_batch_request__descriptor, text, size);
    parse_as(&batch__v1__operation__descriptor, text, size);
    parse_as(&google__rpc__status__descriptor, text, size);
    return 0;
}
