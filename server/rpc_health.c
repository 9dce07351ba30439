/* grpc.health.v1.Health: Check and Watch, for load balancers and orchestrators (e.g. a
 * Kubernetes grpc probe). "" (the whole server) and batch.v1.BatchService are SERVING while
 * batchd accepts batches and NOT_SERVING from the moment it starts draining; any other name is
 * unknown (Check: NOT_FOUND; Watch: SERVICE_UNKNOWN, and the stream stays open, as the health
 * protocol asks).
 *
 * A watcher, like a WatchBatch watcher, never queues: it remembers the last status it handed
 * to gRPC and, whenever nothing is in flight, sends the current one if it differs. A burst of
 * changes therefore costs at most one message in flight plus the latest status. */
#include <string.h>

#include "log.h"
#include "pbgrpc.h"
#include "pbtime.h"
#include "rpcs.h"

#include "grpc/health/v1/health.pb-c.h"

#define SERVING_STATUS(s) GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##s
typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

typedef enum health_watch_state {
    HEALTH_WATCH_LIVE,  /* in app->health_watchers, sending changes */
    HEALTH_WATCH_DONE,  /* finished, refused or cancelled */
} health_watch_state;

typedef struct health_watch {
    rpc_call base;              /* first: the rpc layer allocates and frees the whole struct */
    health_watch_state state;
    int known;                  /* a service batchd reports on */
    int sent;                   /* last status given to rpc_call_send; -1 before the first */
    list_node link;             /* app->health_watchers while LIVE */
} health_watch;

/* The names batchd reports on. Reflection and health are not listed: they answer whenever
 * the process answers at all, which the transport already tells. */
static int known_service(const char *name)
{
    return name[0] == '\0' || strcmp(name, "batch.v1.BatchService") == 0;
}

static serving_status current(const app *a, int known)
{
    if (!known)
        return SERVING_STATUS(SERVICE_UNKNOWN);
    return a->health_serving ? SERVING_STATUS(SERVING) : SERVING_STATUS(NOT_SERVING);
}

static grpc_byte_buffer *pack_status(serving_status s)
{
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = s;
    return pbgrpc_pack(&r.base);
}

/* Names from clients go into details only when they are short printable ASCII, so that the
 * google.rpc.Status stays valid UTF-8 for strict decoders. */
static int printable(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= 200 || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
            return 0;
    return 1;
}

/* ---- Check ---------------------------------------------------------------------------- */

static void check_start(rpc_call *c, grpc_byte_buffer *req)
{
    app *a = rpc_call_arg(c);
    Grpc__Health__V1__HealthCheckRequest *r = (Grpc__Health__V1__HealthCheckRequest *)rpc_unpack_request(
        c, &grpc__health__v1__health_check_request__descriptor, req);
    if (r == NULL)
        return;
    if (!known_service(r->service)) {
        int show = printable(r->service);
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_NOT_FOUND, "unknown service %s",
                                      show ? r->service : "(unprintable)");
        if (st) {
            rpcstatus_error_info(st, "UNKNOWN_SERVICE");
            if (show)
                rpcstatus_error_metadata(st, "service", r->service);
        }
        rpc_call_finish(c, st, NULL);
        rpcstatus_free(st);
    } else {
        rpc_call_finish(c, NULL, pack_status(current(a, 1)));
    }
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
}

/* ---- Watch ---------------------------------------------------------------------------- */

static void detach(health_watch *w)
{
    app *a = rpc_call_arg(&w->base);
    if (w->state != HEALTH_WATCH_LIVE)
        return;
    w->state = HEALTH_WATCH_DONE;
    list_remove(&w->link);
    a->n_health_watchers--;
}

static void pump(health_watch *w)
{
    app *a = rpc_call_arg(&w->base);
    if (w->state != HEALTH_WATCH_LIVE || rpc_call_sending(&w->base))
        return;
    serving_status now = current(a, w->known);
    if ((int)now == w->sent)
        return;
    w->sent = (int)now;
    rpc_call_send(&w->base, pack_status(now));
}

static void watch_sent(rpc_call *c, int ok)
{
    if (ok) /* else the call is dying: cancelled follows */
        pump((health_watch *)c);
}

static void watch_cancelled(rpc_call *c) { detach((health_watch *)c); }

static void watch_start(rpc_call *c, grpc_byte_buffer *req)
{
    health_watch *w = (health_watch *)c;
    app *a = rpc_call_arg(c);
    w->state = HEALTH_WATCH_DONE; /* until attached */
    w->sent = -1;
    list_init(&w->link);
    Grpc__Health__V1__HealthCheckRequest *r = (Grpc__Health__V1__HealthCheckRequest *)rpc_unpack_request(
        c, &grpc__health__v1__health_check_request__descriptor, req);
    if (r == NULL)
        return;
    if (a->n_health_watchers >= a->cfg->max_watchers) {
        /* The WatchBatch cap, counted apart: a flood of health streams must not lock out
         * batch watchers, nor the reverse. */
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_RESOURCE_EXHAUSTED, "too many health watchers (limit %u)",
                                      a->cfg->max_watchers);
        if (st) {
            rpcstatus_quota_violation(st, "health_watchers",
                                      "at most %u Health.Watch streams at once (batchd --max-watchers)",
                                      a->cfg->max_watchers);
            rpcstatus_retry_after(st, PBTIME_NS_PER_SEC);
            rpcstatus_error_info(st, "TOO_MANY_WATCHERS");
        }
        rpc_call_finish(c, st, NULL);
        rpcstatus_free(st);
    } else {
        w->known = known_service(r->service);
        w->state = HEALTH_WATCH_LIVE;
        list_push_back(&a->health_watchers, &w->link);
        a->n_health_watchers++;
        pump(w); /* the current status first, as the protocol asks */
    }
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

void rpc_health_set_serving(app *a, int serving)
{
    serving = serving != 0;
    if (a->health_serving == serving)
        return;
    a->health_serving = serving;
    log_debug("health: %s", serving ? "SERVING" : "NOT_SERVING");
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &a->health_watchers)
        pump(container_of(pos, health_watch, link));
}

void rpc_health_release_all(app *a)
{
    list_node *pos, *tmp;
    list_foreach_safe(pos, tmp, &a->health_watchers) {
        health_watch *w = container_of(pos, health_watch, link);
        /* The latest status goes out before the end of the stream, even when another is
         * still in flight (rpc_call_finish queues behind it): a watcher must have seen
         * NOT_SERVING before its stream ends. */
        serving_status now = current(a, w->known);
        grpc_byte_buffer *last = (int)now != w->sent ? pack_status(now) : NULL;
        detach(w);
        /* UNAVAILABLE, not OK: the server is going away, and a client-side health checker
         * should reconnect elsewhere (or later) as for any lost transport. */
        rpcstatus *st = rpcstatus_new(GRPC_STATUS_UNAVAILABLE, "batchd is shutting down");
        if (st) {
            rpcstatus_retry_after(st, PBTIME_NS_PER_SEC);
            rpcstatus_error_info(st, "SHUTTING_DOWN");
        }
        rpc_call_finish(&w->base, st, last);
        rpcstatus_free(st);
    }
}

void rpc_health_register(app *a)
{
    a->health_serving = 1;
    a->methods[APP_HEALTH_CHECK] = (rpc_method){
        .path = "/grpc.health.v1.Health/Check",
        .call_size = sizeof(rpc_call),
        .start = check_start,
    };
    a->methods[APP_HEALTH_WATCH] = (rpc_method){
        .path = "/grpc.health.v1.Health/Watch",
        .call_size = sizeof(health_watch),
        .start = watch_start,
        .sent = watch_sent,
        .cancelled = watch_cancelled,
    };
}
