/* pbjson checks (see pbjson_check.h). */
#include "pbjson_check.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

ProtobufCMessage *pbc_parse_opt(const ProtobufCMessageDescriptor *d, const char *text,
                                const pbjson_options *opt)
{
    char *err = NULL;
    ProtobufCMessage *m = pbjson_parse_text(d, text, strlen(text), opt, &err, NULL);
    cr_assert_not_null(m, "refused %s: %s", text, err ? err : "(no message)");
    cr_assert_null(err);
    return m;
}

ProtobufCMessage *pbc_parse(const ProtobufCMessageDescriptor *d, const char *text)
{
    return pbc_parse_opt(d, text, NULL);
}

/* The error for text, which must be refused; malloc'd. */
char *pbc_parse_error_opt(const ProtobufCMessageDescriptor *d, const char *text,
                          const pbjson_options *opt, pbjson_position *pos)
{
    char *err = NULL;
    ProtobufCMessage *m = pbjson_parse_text(d, text, strlen(text), opt, &err, pos);
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    cr_assert_null(m, "accepted %s", text);
    cr_assert_not_null(err);
    return err;
}

void pbc_expect_error(const ProtobufCMessageDescriptor *d, const char *text, const char *want)
{
    char *err = pbc_parse_error_opt(d, text, NULL, NULL);
    cr_assert_str_eq(err, want);
    free(err);
}

char *pbc_print_opt(const ProtobufCMessage *m, const pbjson_options *opt)
{
    char *err = NULL;
    char *text = pbjson_print_text(m, opt, JSON_COMPACT, &err);
    cr_assert_not_null(text, "print failed: %s", err ? err : "(no message)");
    cr_assert_null(err);
    return text;
}

void pbc_expect_print(const ProtobufCMessage *m, const pbjson_options *opt, const char *want)
{
    char *text = pbc_print_opt(m, opt);
    cr_assert_str_eq(text, want);
    free(text);
}

void pbc_expect_print_error(const ProtobufCMessage *m, const char *want)
{
    char *err = NULL;
    json_t *j = pbjson_print(m, NULL, &err);
    json_decref(j);
    cr_assert_null(j);
    cr_assert_str_eq(err, want);
    free(err);
}

/* Parses canonical text (members in field order, default values left out) and prints it
 * back: the text must come out unchanged. */
void pbc_expect_round_trip(const ProtobufCMessageDescriptor *d, const char *text)
{
    ProtobufCMessage *m = pbc_parse(d, text);
    pbc_expect_print(m, NULL, text);
    protobuf_c_message_free_unpacked(m, NULL);
}
