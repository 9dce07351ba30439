/* The command context (see batchctl.h). */
#include "batchctl.h"

#include <string.h>
#include <time.h>

#include "diag.h"

rpcclient *bctl_rpc(bctl *ctl)
{
    if (ctl->rpc == NULL)
        ctl->rpc = rpcclient_new(ctl->o->server);
    return ctl->rpc;
}

void bctl_close(bctl *ctl)
{
    rpcclient_free(ctl->rpc);
    ctl->rpc = NULL;
}

int bctl_interrupted(const bctl *ctl)
{
    return ctl->interrupted && *ctl->interrupted;
}

double bctl_timeout_s(const bctl *ctl)
{
    return (double)ctl->o->timeout_ns / 1e9;
}

ProtobufCMessage *bctl_call(bctl *ctl, const char *method, const ProtobufCMessage *req,
                            const ProtobufCMessageDescriptor *resp_desc, rpcclient_status *st)
{
    rpcclient_status local = {0};
    rpcclient_status *s = st ? st : &local;
    ProtobufCMessage *resp = NULL;
    if (rpcclient_unary(bctl_rpc(ctl), method, req, resp_desc, &resp, bctl_timeout_s(ctl), s) != GRPC_STATUS_OK)
        diag_rpc(ctl->err, ctl->o->server, s, NULL);
    rpcclient_status_clear(&local);
    return resp;
}

int bctl_sleep(const bctl *ctl, double s)
{
    /* Short steps, so that Ctrl-C is noticed within 50 ms whatever thread the signal hit. */
    while (s > 0) {
        if (bctl_interrupted(ctl))
            return -1;
        double step = s < 0.05 ? s : 0.05;
        struct timespec ts = {0, (long)(step * 1e9)};
        nanosleep(&ts, NULL);
        s -= step;
    }
    return bctl_interrupted(ctl) ? -1 : 0;
}

const char *bctl_server_hint(const bctl *ctl, char *buf, size_t len)
{
    if (strcmp(ctl->o->server, BCTL_DEFAULT_SERVER) == 0)
        buf[0] = '\0';
    else
        snprintf(buf, len, " --server %s", ctl->o->server);
    return buf;
}

int bctl_batch_ended(int state)
{
    return state >= BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED;
}
