/* libFuzzer target: what batchctl decodes from a server's grpc-status-details-bin trailer:
 * the google.rpc.Status (rpcstatus_unpack), each detail of the four kinds batchd attaches
 * (rpcstatus_unpack_detail), and the report diag_rpc prints from them. The status code is
 * the one the bytes carry; the report goes to /dev/null. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "diag.h"
#include "google/rpc/error_details.pb-c.h"
#include "rpcclient.h"
#include "rpcstatus.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    devnull = fopen("/dev/null", "w");
    if (devnull == NULL)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ProtobufCMessageDescriptor *const kinds[] = {
        &google__rpc__bad_request__descriptor,
        &google__rpc__quota_failure__descriptor,
        &google__rpc__error_info__descriptor,
        &google__rpc__retry_info__descriptor,
    };
    Google__Rpc__Status *s = rpcstatus_unpack(data, size);
    if (s == NULL)
        return 0;
    for (size_t i = 0; i < s->n_details; i++) {
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
            ProtobufCMessage *m = rpcstatus_unpack_detail(s->details[i], kinds[k]);
            if (m != NULL)
                protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    /* Violations of operations[0..3] are traced to input lines, as for a CSV file. */
    static const uint32_t line_of[] = {2, 3, 0, 5};
    diag_origin origin = {"input.csv", line_of, sizeof line_of / sizeof *line_of};
    rpcclient_status st = {(grpc_status_code)s->code, s->message, s};
    diag_rpc(devnull, "127.0.0.1:50051", &st, &origin);
    google__rpc__status__free_unpacked(s, NULL);
    return 0;
}
