/* Reports of failed calls to batchd, for people: what went wrong, one problem per line,
 * with the input file and line of each invalid operation when they are known. */
#ifndef BATCHCTL_DIAG_H
#define BATCHCTL_DIAG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rpcclient.h"

/* Where each operation of a request came from. */
typedef struct diag_origin {
    const char *file;           /* as the user named it; "-" reads "<stdin>" */
    const uint32_t *line_of;    /* line of operations[i], 0 when unknown */
    size_t n;
} diag_origin;

/* "UNAVAILABLE", "NOT_FOUND"... */
const char *diag_code_name(grpc_status_code code);

/* ErrorInfo.reason of st ("" when it has none) into buf. */
const char *diag_reason(const rpcclient_status *st, char *buf, size_t len);

/* Prints why a call failed. server is the address called; origin may be NULL. Every line
 * starts with "batchctl: " or, for a violation traced to the input, "FILE:LINE: ". */
void diag_rpc(FILE *f, const char *server, const rpcclient_status *st, const diag_origin *origin);

#endif
