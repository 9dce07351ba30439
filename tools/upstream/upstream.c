/* The test/benchmark HTTP/1.1 upstream: listener, thread and counters on a private libev loop.
 * Connections and their requests are in upstream_conn.c, the answers a query string asks for
 * in upstream_answer.c; upstream_int.h is what the three share. */
#include "upstream.h"

#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upstream_int.h"

#define DEFAULT_MAX_HEAD (64u * 1024)
#define DEFAULT_MAX_BODY (8u * 1024 * 1024)

/* ---- growable byte buffer ---- */

int upstream__buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int upstream__buf_append(struct buf *b, const void *p, size_t n)
{
    if (upstream__buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int upstream__buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data ? b->data + b->len : NULL, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= b->cap - b->len) {
        if (upstream__buf_reserve(b, (size_t)n + 1) < 0)
            return -1;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return 0;
}

void upstream__buf_free(struct buf *b)
{
    free(b->data);
    *b = (struct buf){0};
}

/* ---- string -> count table (Idempotency-Keys, fail_first retry keys) ---- */

struct key_entry {
    struct key_entry *next;
    uint64_t hash, count;
    size_t len;
    char key[];
};


static uint64_t key_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static struct key_entry *key_find(const struct key_table *t, const char *s, size_t n, uint64_t h)
{
    if (!t->nslots)
        return NULL;
    for (struct key_entry *e = t->slots[h & (t->nslots - 1)]; e; e = e->next)
        if (e->hash == h && e->len == n && memcmp(e->key, s, n) == 0)
            return e;
    return NULL;
}

/* Adds one to the count of s and returns the new count; 0 when memory ran out. */
static uint64_t key_bump(struct key_table *t, const char *s, size_t n)
{
    uint64_t h = key_hash(s, n);
    struct key_entry *e = key_find(t, s, n, h);
    if (e)
        return ++e->count;
    if (t->n >= t->nslots) { /* keep chains short: grow at load factor 1 */
        size_t nslots = t->nslots ? t->nslots * 2 : 64;
        struct key_entry **slots = calloc(nslots, sizeof *slots);
        if (!slots)
            return 0;
        for (size_t i = 0; i < t->nslots; i++) {
            while (t->slots[i]) {
                struct key_entry *m = t->slots[i];
                t->slots[i] = m->next;
                m->next = slots[m->hash & (nslots - 1)];
                slots[m->hash & (nslots - 1)] = m;
            }
        }
        free(t->slots);
        t->slots = slots;
        t->nslots = nslots;
    }
    e = malloc(sizeof *e + n);
    if (!e)
        return 0;
    e->hash = h;
    e->count = 1;
    e->len = n;
    memcpy(e->key, s, n);
    e->next = t->slots[h & (t->nslots - 1)];
    t->slots[h & (t->nslots - 1)] = e;
    t->n++;
    return 1;
}

static void key_clear(struct key_table *t)
{
    for (size_t i = 0; i < t->nslots; i++) {
        while (t->slots[i]) {
            struct key_entry *e = t->slots[i];
            t->slots[i] = e->next;
            free(e);
        }
    }
    free(t->slots);
    *t = (struct key_table){0};
}

/* ---- counters ---- */

void upstream__stats_received(upstream *u, struct req *r, const char *key, size_t key_len,
                              const char *retry_key, size_t retry_len, bool retry_is_key,
                              uint64_t *attempt)
{
    pthread_mutex_lock(&u->mu);
    u->stats.requests++;
    if (++u->stats.in_flight > u->stats.max_in_flight)
        u->stats.max_in_flight = u->stats.in_flight;
    r->counted = true;
    if (key) {
        uint64_t n = key_bump(&u->keys, key, key_len);
        u->stats.keys = u->keys.n;
        if (n > u->stats.max_key_count)
            u->stats.max_key_count = n;
    }
    if (attempt) {
        /* The two kinds of retry key share a table: a leading byte keeps them apart. */
        char tag = retry_is_key ? 'k' : 't';
        struct buf k = {0};
        if (upstream__buf_append(&k, &tag, 1) == 0 &&
            upstream__buf_append(&k, retry_key, retry_len) == 0)
            *attempt = key_bump(&u->retries, k.data, k.len);
        upstream__buf_free(&k);
    }
    pthread_mutex_unlock(&u->mu);
}

void upstream__stats_answered(upstream *u, struct req *r)
{
    if (!r->counted)
        return;
    r->counted = false;
    pthread_mutex_lock(&u->mu);
    u->stats.in_flight--;
    pthread_mutex_unlock(&u->mu);
}

void upstream__stats_add(upstream *u, uint64_t *field)
{
    pthread_mutex_lock(&u->mu);
    (*field)++;
    pthread_mutex_unlock(&u->mu);
}

void upstream_get_stats(upstream *u, upstream_stats *out)
{
    pthread_mutex_lock(&u->mu);
    *out = u->stats;
    pthread_mutex_unlock(&u->mu);
}

uint64_t upstream_key_count(upstream *u, const char *key)
{
    size_t n = strlen(key);
    pthread_mutex_lock(&u->mu);
    struct key_entry *e = key_find(&u->keys, key, n, key_hash(key, n));
    uint64_t count = e ? e->count : 0;
    pthread_mutex_unlock(&u->mu);
    return count;
}

void upstream_reset_stats(upstream *u)
{
    pthread_mutex_lock(&u->mu);
    uint64_t in_flight = u->stats.in_flight;
    u->stats = (upstream_stats){.in_flight = in_flight, .max_in_flight = in_flight};
    key_clear(&u->keys);
    key_clear(&u->retries);
    pthread_mutex_unlock(&u->mu);
}

int upstream_port(const upstream *u)
{
    return u->port;
}

/* ---- listener and thread ---- */

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    upstream *u = container_of(w, upstream, accept_io);
    for (int i = 0; i < 64; i++) { /* bounded, so a connection storm cannot starve the others */
        int fd = accept4(u->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The pending connection stays readable: level-triggered, we would spin. */
                ev_io_stop(loop, &u->accept_io);
                ev_timer_set(&u->accept_backoff, 0.1, 0.);
                ev_timer_start(loop, &u->accept_backoff);
            }
            return;
        }
        if (upstream__conn_new(u, fd) < 0)
            close(fd);
    }
}

static void accept_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    upstream *u = container_of(w, upstream, accept_backoff);
    ev_io_start(loop, &u->accept_io);
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    upstream *u = container_of(w, upstream, stop_async);
    ev_io_stop(loop, &u->accept_io);
    ev_timer_stop(loop, &u->accept_backoff);
    ev_async_stop(loop, &u->stop_async);
    while (u->conns)
        upstream__conn_destroy(u->conns);
    ev_break(loop, EVBREAK_ALL);
}

static void *upstream_thread(void *arg)
{
    upstream *u = arg;
    ev_run(u->loop, 0);
    return NULL;
}

/* Returns a listening socket bound to host:port and stores the bound port; -1 with errno set. */
static int listen_on(const char *host, int port, int *bound)
{
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int fd = -1, err;
    if (getaddrinfo(host, service, &hints, &ai) != 0) {
        err = EINVAL;
        goto fail;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
        err = errno;
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        err = errno;
        goto fail;
    }
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(ai);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    if (ai)
        freeaddrinfo(ai);
    errno = err;
    return -1;
}

upstream *upstream_start(const upstream_config *cfg)
{
    static const upstream_config defaults = {0};
    if (!cfg)
        cfg = &defaults;
    if (cfg->port < 0 || cfg->port > 65535) {
        errno = EINVAL;
        return NULL;
    }
    int err = ENOMEM;
    bool mutex_ok = false;
    upstream *u = calloc(1, sizeof *u);
    if (!u)
        goto fail;
    u->listen_fd = -1;
    u->max_head = cfg->max_head_bytes ? cfg->max_head_bytes : DEFAULT_MAX_HEAD;
    u->max_body = cfg->max_body_bytes ? cfg->max_body_bytes : DEFAULT_MAX_BODY;
    if ((err = pthread_mutex_init(&u->mu, NULL)) != 0)
        goto fail;
    mutex_ok = true;
    u->listen_fd = listen_on(cfg->host ? cfg->host : "127.0.0.1", cfg->port, &u->port);
    if (u->listen_fd < 0) {
        err = errno;
        goto fail;
    }
    /* NOSIGMASK: we own no signal watchers, so libev has no reason to touch the thread's mask. */
    u->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!u->loop) {
        err = ENOMEM;
        goto fail;
    }
    ev_io_init(&u->accept_io, accept_cb, u->listen_fd, EV_READ);
    ev_io_start(u->loop, &u->accept_io);
    ev_init(&u->accept_backoff, accept_backoff_cb);
    ev_async_init(&u->stop_async, stop_cb);
    ev_async_start(u->loop, &u->stop_async);
    if ((err = pthread_create(&u->thread, NULL, upstream_thread, u)) != 0)
        goto fail;
    return u;
fail:
    if (u) {
        if (u->loop)
            ev_loop_destroy(u->loop);
        if (u->listen_fd >= 0)
            close(u->listen_fd);
        if (mutex_ok)
            pthread_mutex_destroy(&u->mu);
        free(u);
    }
    errno = err;
    return NULL;
}

void upstream_stop(upstream *u)
{
    if (!u)
        return;
    ev_async_send(u->loop, &u->stop_async);
    pthread_join(u->thread, NULL);
    ev_loop_destroy(u->loop);
    close(u->listen_fd);
    key_clear(&u->keys);
    key_clear(&u->retries);
    pthread_mutex_destroy(&u->mu);
    free(u);
}
