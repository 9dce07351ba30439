/* Checks for the pbjson suites (test_pbjson_parse.c, test_pbjson_errors.c,
 * test_pbjson_print.c): parse or print a batch.v1 message and fail the test unless it comes
 * out as expected, with the exact error message when one is wanted.
 *
 * Ownership: messages returned by pbc_parse and pbc_parse_opt belong to the caller (free
 * with protobuf_c_message_free_unpacked); strings returned by pbc_parse_error_opt and
 * pbc_print_opt are malloc'd and the caller frees them. The pbc_expect_* helpers free what
 * they make. */
#ifndef BATCHD_PBJSON_CHECK_H
#define BATCHD_PBJSON_CHECK_H

#include <protobuf-c/protobuf-c.h>

#include "batch/v1/batch.pb-c.h"
#include "pbjson.h"

#define PBC_SUBMIT (&batch__v1__submit_batch_request__descriptor)
#define PBC_ITEM (&batch__v1__item_result__descriptor)
#define PBC_OPERATION (&batch__v1__operation__descriptor)
#define PBC_OPTIONS (&batch__v1__batch_options__descriptor)

/* text parsed as d with opt (may be NULL); fails the test if it is refused. */
ProtobufCMessage *pbc_parse_opt(const ProtobufCMessageDescriptor *d, const char *text,
                                const pbjson_options *opt);
/* The same with default options. */
ProtobufCMessage *pbc_parse(const ProtobufCMessageDescriptor *d, const char *text);
/* The error for text, which must be refused; malloc'd. pos (may be NULL) receives its
 * position. */
char *pbc_parse_error_opt(const ProtobufCMessageDescriptor *d, const char *text,
                          const pbjson_options *opt, pbjson_position *pos);
/* text must be refused with exactly the message want. */
void pbc_expect_error(const ProtobufCMessageDescriptor *d, const char *text, const char *want);
/* m printed as compact JSON with opt (may be NULL); fails the test if printing fails. */
char *pbc_print_opt(const ProtobufCMessage *m, const pbjson_options *opt);
/* m must print as exactly want. */
void pbc_expect_print(const ProtobufCMessage *m, const pbjson_options *opt, const char *want);
/* Printing m must fail with exactly the message want. */
void pbc_expect_print_error(const ProtobufCMessage *m, const char *want);
/* Parses canonical text (members in field order, default values left out) and prints it
 * back: the text must come out unchanged. */
void pbc_expect_round_trip(const ProtobufCMessageDescriptor *d, const char *text);

#endif
