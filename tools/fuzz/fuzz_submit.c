/* libFuzzer target: the server's SubmitBatch request path over untrusted wire bytes, as
 * rpc_submit.c runs it: the gRPC byte buffer unpacked (pbgrpc_unpack: the nesting check,
 * then protobuf_c_message_unpack), the batch-size limit, validate_request with its
 * BadRequest details packed as the trailer would carry them, and for a valid request
 * validate_effective_options. */
#include <grpc/grpc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "batch/v1/batch.pb-c.h"
#include "config.h"
#include "pbgrpc.h"
#include "rpcstatus.h"
#include "validate.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read-only after LLVMFuzzerInitialize: a server with two targets and its defaults. */
static config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    grpc_init(); /* byte buffers and slices need it; never shut down, as in batchd */
    config_defaults(&cfg);
    if (config_add_target(&cfg, "api=http://127.0.0.1:1", err, sizeof err) < 0 ||
        config_add_target(&cfg, "slow=http://127.0.0.1:2,concurrency=2,rate=5", err, sizeof err) < 0 ||
        config_finish(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_submit: configuration: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    grpc_byte_buffer *bb = pbgrpc_from_bytes(data, size);
    Batch__V1__SubmitBatchRequest *r = (Batch__V1__SubmitBatchRequest *)pbgrpc_unpack(
        &batch__v1__submit_batch_request__descriptor, bb);
    grpc_byte_buffer_destroy(bb);
    if (r == NULL || r->n_operations > cfg.max_items)
        goto done;
    uint8_t *target_of = malloc(r->n_operations ? r->n_operations : 1);
    rpcstatus *st = rpcstatus_new(GRPC_STATUS_INVALID_ARGUMENT, "invalid batch");
    if (target_of == NULL || st == NULL)
        abort();
    size_t violations = validate_request(&cfg, r, st, target_of);
    if (violations) {
        rpcstatus_set_message(st, "invalid batch: %zu violations", violations);
        rpcstatus_error_info(st, "INVALID_BATCH");
        size_t len;
        uint8_t *packed = rpcstatus_pack(st, &len);
        if (packed == NULL)
            abort();
        free(packed);
    } else {
        for (size_t i = 0; i < r->n_operations; i++)
            if (target_of[i] >= cfg.n_targets)
                abort(); /* a valid request names configured targets only */
        Batch__V1__BatchOptions *o = validate_effective_options(&cfg, r->options);
        if (o == NULL)
            abort();
        batch__v1__batch_options__free_unpacked(o, NULL);
    }
    rpcstatus_free(st);
    free(target_of);
done:
    if (r != NULL)
        batch__v1__submit_batch_request__free_unpacked(r, NULL);
    return 0;
}
