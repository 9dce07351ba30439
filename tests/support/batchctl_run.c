/* Running batchctl as a child process (see batchctl_run.h). */
#include "batchctl_run.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* BATCHD_BINARY_DIR: a compile definition of the testsupport target (tests/CMakeLists.txt). */
#define BATCHCTL BATCHD_BINARY_DIR "/client/batchctl"

extern char **environ;

double br_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- scratch files ------------------------------------------------------------------ */

void br_scratch_open(br_scratch *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/batchctl-test-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir));
}

const char *br_in(br_scratch *s, const char *name)
{
    snprintf(s->path, sizeof s->path, "%s/%.100s", s->dir, name);
    return s->path;
}

const char *br_put(br_scratch *s, const char *name, const char *text)
{
    FILE *f = fopen(br_in(s, name), "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return s->path;
}

char *br_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return strdup("");
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&buf, &cap, '\0', f);
    fclose(f);
    if (n < 0) {
        free(buf);
        return strdup("");
    }
    return buf;
}

void br_scratch_close(br_scratch *s)
{
    DIR *d = opendir(s->dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            unlink(br_in(s, e->d_name));
    if (d)
        closedir(d);
    rmdir(s->dir);
}

/* ---- running batchctl ------------------------------------------------------------- */

void br_ran_free(br_ran *r)
{
    free(r->out);
    free(r->err);
}

/* The environment of the child: ours without what would change batchctl's behaviour,
 * plus set (NULL-terminated "K=V" strings). */
static char **child_env(const char *const *set)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 16, sizeof *env);
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "BATCHD_SERVER=", 14) && strncmp(environ[i], "NO_COLOR=", 9) &&
            strncmp(environ[i], "TERM=", 5))
            env[k++] = environ[i];
    for (size_t i = 0; set && set[i] && k < n + 15; i++)
        env[k++] = (char *)set[i];
    return env;
}

/* Starts batchctl with args (NULL-terminated, after the program name). stdout and stderr
 * go to files in s, or with a terminal (tty) to a pseudo-terminal. */
br_child br_spawn(br_scratch *s, const char *const *args, const char *const *env_set, int tty)
{
    const char *argv[64] = {BATCHCTL};
    int argc = 1;
    for (int i = 0; args[i]; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    char **env = child_env(env_set);
    br_child c = {.pty = -1};
    s->children++;
    snprintf(c.out_path, sizeof c.out_path, "%s/out.%d", s->dir, s->children);
    snprintf(c.err_path, sizeof c.err_path, "%s/err.%d", s->dir, s->children);
    int out = tty ? -1 : open(c.out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = tty ? -1 : open(c.err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int nul = open("/dev/null", O_RDONLY);
    if (tty) {
        struct winsize ws = {.ws_row = 24, .ws_col = 100};
        c.pid = forkpty(&c.pty, NULL, NULL, &ws);
    } else {
        c.pid = fork();
    }
    cr_assert_geq(c.pid, 0);
    if (c.pid == 0) {
        /* Only async-signal-safe calls between fork and exec: this process has threads. */
        if (!tty) {
            dup2(nul, 0);
            dup2(out, 1);
            dup2(err, 2);
        }
        execve(BATCHCTL, (char **)argv, env);
        _exit(127);
    }
    if (!tty) {
        close(out);
        close(err);
    }
    close(nul);
    free(env);
    return c;
}

br_ran br_finish(br_child *c, double timeout_s)
{
    br_ran r = {0};
    double start = br_now_s();
    char *tty_out = NULL;
    size_t tty_len = 0;
    FILE *tty_f = c->pty >= 0 ? open_memstream(&tty_out, &tty_len) : NULL;
    for (;;) {
        if (c->pty >= 0) { /* keep the terminal drained, or the child blocks writing to it */
            struct pollfd p = {c->pty, POLLIN, 0};
            char buf[4096];
            ssize_t n;
            while (poll(&p, 1, 5) > 0 && (n = read(c->pty, buf, sizeof buf)) > 0)
                fwrite(buf, 1, (size_t)n, tty_f);
        }
        int st;
        pid_t w = waitpid(c->pid, &st, WNOHANG);
        if (w == c->pid) {
            r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (br_now_s() - start > timeout_s) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &st, 0);
            char *err = br_slurp(c->err_path);
            cr_assert_fail("batchctl still running after %.0fs; stderr:\n%s", timeout_s, err);
        }
        if (c->pty < 0)
            h_sleep_ms(5);
    }
    r.secs = br_now_s() - start;
    if (c->pty >= 0) {
        char buf[4096];
        ssize_t n;
        while ((n = read(c->pty, buf, sizeof buf)) > 0) /* EIO once the child is gone */
            fwrite(buf, 1, (size_t)n, tty_f);
        fclose(tty_f);
        close(c->pty);
        r.out = tty_out;
        r.err = strdup("");
    } else {
        r.out = br_slurp(c->out_path);
        r.err = br_slurp(c->err_path);
    }
    /* A sanitizer build of batchctl reports into its own stderr. */
    const char *all = c->pty >= 0 ? r.out : r.err;
    cr_assert_null(strstr(all, "Sanitizer"), "batchctl: %s", all);
    cr_assert_null(strstr(all, "runtime error:"), "batchctl: %s", all);
    return r;
}

/* Runs batchctl against h (through $BATCHD_SERVER) to the end. */
br_ran br_ctl(harness *h, br_scratch *s, ...)
{
    const char *args[48];
    int n = 0;
    va_list ap;
    va_start(ap, s);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    char server[96];
    snprintf(server, sizeof server, "BATCHD_SERVER=%s", h ? h->addr : "127.0.0.1:1");
    const char *env[] = {server, NULL};
    br_child c = br_spawn(s, args, env, 0);
    return br_finish(&c, 60);
}

/* Waits until the file at path contains needle (count times). */
void br_wait_for(const char *path, const char *needle, int count, double timeout_s)
{
    double start = br_now_s();
    for (;;) {
        char *text = br_slurp(path);
        int n = 0;
        for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
            n++;
        free(text);
        if (n >= count)
            return;
        cr_assert_lt(br_now_s() - start, timeout_s, "no %d x \"%s\" in %s", count, needle, path);
        h_sleep_ms(10);
    }
}

size_t br_n_batches(harness *h)
{
    Batch__V1__ListBatchesRequest req = BATCH__V1__LIST_BATCHES_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_LIST, &req.base, &batch__v1__list_batches_response__descriptor, &m,
                                 10, NULL), GRPC_STATUS_OK);
    size_t n = ((Batch__V1__ListBatchesResponse *)m)->n_batches;
    protobuf_c_message_free_unpacked(m, NULL);
    return n;
}

/* The only batch on h, or the newest. Caller frees. */
Batch__V1__Batch *br_newest(harness *h)
{
    Batch__V1__ListBatchesRequest req = BATCH__V1__LIST_BATCHES_REQUEST__INIT;
    req.page_size = 1;
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpcclient_unary(h->client, M_LIST, &req.base, &batch__v1__list_batches_response__descriptor, &m,
                                 10, NULL), GRPC_STATUS_OK);
    Batch__V1__ListBatchesResponse *r = (Batch__V1__ListBatchesResponse *)m;
    cr_assert_eq(r->n_batches, 1, "no batch");
    Batch__V1__Batch *b = h_get(h, r->batches[0]->id, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    return b;
}

br_ops *br_operations(harness *h, const char *id, int state)
{
    Batch__V1__ListOperationsRequest req = BATCH__V1__LIST_OPERATIONS_REQUEST__INIT;
    req.batch_id = (char *)id;
    req.state = state;
    rpcclient_stream *s = rpcclient_stream_open(h->client, "/batch.v1.BatchService/ListOperations", &req.base, 60);
    br_ops *ops = calloc(1, sizeof *ops);
    cr_assert_not_null(ops);
    ProtobufCMessage *m;
    int r;
    while ((r = rpcclient_stream_next(s, &batch__v1__operation_record__descriptor, &m, 0)) == 1) {
        cr_assert_lt(ops->n, sizeof ops->v / sizeof ops->v[0], "more operations than br_ops holds");
        ops->v[ops->n++] = (Batch__V1__OperationRecord *)m;
    }
    cr_assert_eq(r, 0, "ListOperations: undecodable message");
    rpcclient_status st = {0};
    cr_assert_eq(rpcclient_stream_finish(s, &st), GRPC_STATUS_OK, "ListOperations: %s", st.message);
    rpcclient_status_clear(&st);
    return ops;
}

void br_ops_free(br_ops *ops)
{
    for (size_t i = 0; i < ops->n; i++)
        batch__v1__operation_record__free_unpacked(ops->v[i], NULL);
    free(ops);
}

const char *br_label(const Batch__V1__Batch *b, const char *key)
{
    for (size_t i = 0; b->options && i < b->options->n_labels; i++)
        if (strcmp(b->options->labels[i]->key, key) == 0)
            return b->options->labels[i]->value;
    return NULL;
}

void br_jlines_parse(br_jlines *j, const char *text)
{
    memset(j, 0, sizeof *j);
    char *copy = strdup(text), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t e;
        cr_assert_lt(j->n, 256);
        j->v[j->n] = json_loads(line, 0, &e);
        cr_assert_not_null(j->v[j->n], "not JSON: %s (%s)", line, e.text);
        j->n++;
    }
    free(copy);
}

void br_jlines_free(br_jlines *j)
{
    for (size_t i = 0; i < j->n; i++)
        json_decref(j->v[i]);
}

const char *br_jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* ---- the proxy ---------------------------------------------------------------------- */

static int proxy_listen(void)
{
    int port = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(fd, 16), 0);
    return fd;
}

static void proxy_cut(br_proxy *p)
{
    struct linger lg = {1, 0}; /* RST: an abrupt failure, not a goodbye */
    for (int i = 0; i < p->n_pairs; i++)
        for (int k = 0; k < 2; k++) {
            setsockopt(p->pairs[i][k], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(p->pairs[i][k]);
        }
    p->n_pairs = 0;
}

static void *proxy_main(void *arg)
{
    br_proxy *p = arg;
    double refuse_until = 0;
    for (;;) {
        struct pollfd fds[2 + 64];
        int n = 0;
        fds[n++] = (struct pollfd){p->ctl[0], POLLIN, 0};
        fds[n++] = (struct pollfd){p->listen_fd, POLLIN, 0};
        int first_pair = n;
        for (int i = 0; i < p->n_pairs; i++) {
            fds[n++] = (struct pollfd){p->pairs[i][0], POLLIN, 0};
            fds[n++] = (struct pollfd){p->pairs[i][1], POLLIN, 0};
        }
        poll(fds, (nfds_t)n, -1);
        if (fds[0].revents) {
            int cmd[2]; /* pause in ms (-1: quit), new target port (0: the same) */
            if (read(p->ctl[0], cmd, sizeof cmd) != sizeof cmd || cmd[0] < 0) {
                proxy_cut(p);
                close(p->listen_fd);
                return NULL;
            }
            proxy_cut(p);
            refuse_until = br_now_s() + cmd[0] / 1000.0;
            if (cmd[1])
                p->target_port = cmd[1];
            continue;
        }
        if (fds[1].revents) {
            int c = accept(p->listen_fd, NULL, NULL);
            if (c >= 0 && br_now_s() < refuse_until) {
                struct linger lg = {1, 0};
                setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                close(c);
                continue;
            }
            int up = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->target_port),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            if (c >= 0 && connect(up, (struct sockaddr *)&a, sizeof a) == 0 && p->n_pairs < 32) {
                p->pairs[p->n_pairs][0] = c;
                p->pairs[p->n_pairs][1] = up;
                p->n_pairs++;
                pthread_mutex_lock(&p->mu);
                p->accepted++;
                pthread_mutex_unlock(&p->mu);
            } else {
                if (c >= 0)
                    close(c);
                close(up);
            }
            continue;
        }
        for (int i = 0; i < p->n_pairs; i++) {
            for (int k = 0; k < 2; k++) {
                if (!fds[first_pair + 2 * i + k].revents)
                    continue;
                char buf[65536];
                ssize_t got = read(p->pairs[i][k], buf, sizeof buf);
                int dead = got <= 0;
                for (ssize_t off = 0; !dead && off < got;) {
                    ssize_t w = write(p->pairs[i][1 - k], buf + off, (size_t)(got - off));
                    dead = w <= 0;
                    off += w > 0 ? w : 0;
                }
                if (dead) {
                    close(p->pairs[i][0]);
                    close(p->pairs[i][1]);
                    p->pairs[i][0] = p->pairs[p->n_pairs - 1][0];
                    p->pairs[i][1] = p->pairs[p->n_pairs - 1][1];
                    p->n_pairs--;
                    goto next_round; /* the fd table changed */
                }
            }
        }
    next_round:;
    }
}

br_proxy *br_proxy_start(int target_port)
{
    br_proxy *p = calloc(1, sizeof *p);
    p->target_port = target_port;
    p->listen_fd = proxy_listen();
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    getsockname(p->listen_fd, (struct sockaddr *)&a, &alen);
    p->port = ntohs(a.sin_port);
    cr_assert_eq(pipe(p->ctl), 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_create(&p->thread, NULL, proxy_main, p);
    return p;
}

/* Cuts every connection and refuses new ones for pause_ms; then forwards to target_port
 * unless it is 0. */
void br_proxy_break(br_proxy *p, int pause_ms, int target_port)
{
    int cmd[2] = {pause_ms, target_port};
    cr_assert_eq(write(p->ctl[1], cmd, sizeof cmd), (ssize_t)sizeof cmd);
}

int br_proxy_accepted(br_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->accepted;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void br_proxy_stop(br_proxy *p)
{
    int quit[2] = {-1, 0};
    cr_assert_eq(write(p->ctl[1], quit, sizeof quit), (ssize_t)sizeof quit);
    pthread_join(p->thread, NULL);
    close(p->ctl[0]);
    close(p->ctl[1]);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int br_port_of(const char *addr)
{
    return atoi(strrchr(addr, ':') + 1);
}
