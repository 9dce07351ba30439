/* Retention, eviction and key expiry (see sweep.h). */
#include "sweep.h"

#include <string.h>

#include "log.h"
#include "pbtime.h"

static void on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    sweep_run(container_of(w, app, sweep_timer));
}

void sweep_start(app *a)
{
    /* Often enough that retention is honoured within a few percent, at most once a minute. */
    double every = (double)a->cfg->retention_ns / 1e9 / 20;
    every = every < 0.05 ? 0.05 : every > 60 ? 60 : every;
    ev_timer_init(&a->sweep_timer, on_sweep, every, every);
    ev_timer_start(a->loop, &a->sweep_timer);
    ev_unref(a->loop); /* housekeeping alone does not keep batchd running */
}

void sweep_stop(app *a)
{
    if (ev_is_active(&a->sweep_timer)) {
        ev_ref(a->loop);
        ev_timer_stop(a->loop, &a->sweep_timer);
    }
}

unsigned sweep_run(app *a)
{
    int64_t now = pbtime_wall_ns();
    int64_t cutoff = now - a->cfg->retention_ns, keys_cutoff = now - a->cfg->idempotency_ttl_ns;
    int durable = store_durable(a->store);
    unsigned deleted = 0, evicted = 0;
    /* Oldest first; the registry lists newest first. */
    for (list_node *pos = a->reg.all.prev, *prev; pos != &a->reg.all; pos = prev) {
        prev = pos->prev;
        batch *b = container_of(pos, batch, all_link);
        if (!batch_state_terminal(b->state) || b->refs > 0)
            continue;
        if (b->end_ns < cutoff) {
            char id[BATCH_ID_LEN + 1];
            memcpy(id, b->id, sizeof id);
            app_forget_batch(a, b); /* observers (watchers, listers) are told it is gone */
            store_delete_batch(a->store, id, keys_cutoff, NULL, NULL);
            deleted++;
        } else if (durable && b->items && list_empty(&b->observers) && b->end_ns < now - SWEEP_EVICT_AFTER_NS) {
            batch_evict(b);
            evicted++;
        }
    }
    unsigned keys = app_expire_keys(a, keys_cutoff);
    if (deleted || keys)
        log_info("retention: deleted %u ended batches, forgot %u idempotency keys", deleted, keys);
    if (evicted)
        log_debug("%u ended batches left memory (the store keeps their results)", evicted);
    return deleted;
}
