/* Running the built batchctl as a child process, for the end-to-end suites
 * (test_batchctl.c, test_batchctl_retry.c, test_batchctl_watch.c): scratch directories for
 * its inputs and outputs, spawning it with its output in files or in a pseudo-terminal,
 * collecting its exit status and output, parsing JSON-lines output, reading what batchd
 * holds, and a TCP proxy in front of batchd that can break connections as a network failure
 * does.
 *
 * Ownership: a br_scratch lives in the caller (usually on the stack) from br_scratch_open to
 * br_scratch_close, which removes the directory and every file in it. A br_ran owns its out
 * and err (free with br_ran_free). A br_ops owns its records (free with br_ops_free). A
 * br_jlines holds one reference per line (drop them with br_jlines_free). A br_proxy is
 * allocated by br_proxy_start and freed by br_proxy_stop.
 * Every helper fails the test (Criterion assertion) rather than returning an error. */
#ifndef BATCHD_BATCHCTL_RUN_H
#define BATCHD_BATCHCTL_RUN_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include "batch/v1/batch.pb-c.h"
#include "harness.h"

/* A temporary directory for the files of one test. */
typedef struct br_scratch {
    char dir[64];
    char path[256];  /* the last path made by br_in() */
    int children;    /* numbers the output files of children */
} br_scratch;

/* A started batchctl. */
typedef struct br_child {
    pid_t pid;
    int pty;             /* master side of the child's terminal, or -1 */
    char out_path[128], err_path[128];
} br_child;

/* A batchctl that has ended. */
typedef struct br_ran {
    int status;          /* the exit status, or 128 + the signal that killed it */
    char *out, *err;     /* stdout and stderr (for a terminal child: everything, in out) */
    double secs;
} br_ran;

/* The operations of a batch as ListOperations sends them. */
typedef struct br_ops {
    Batch__V1__OperationRecord *v[256];
    size_t n;
} br_ops;

/* The JSON lines of text, parsed. */
typedef struct br_jlines {
    json_t *v[256];
    size_t n;
} br_jlines;

/* A TCP proxy in front of batchd that can cut every connection and refuse new ones for a
 * while, as a network failure does. It keeps its port all along (a port let go could be
 * taken by any connection of a parallel test): refusing is accepting and resetting. */
typedef struct br_proxy {
    int listen_fd, port, target_port;
    int ctl[2];
    pthread_t thread;
    pthread_mutex_t mu;
    int accepted;
    int pairs[32][2];
    int n_pairs;
} br_proxy;

/* CLOCK_MONOTONIC in seconds. */
double br_now_s(void);

/* ---- scratch files ---- */

/* Makes a fresh /tmp/batchctl-test-XXXXXX directory into s->dir. */
void br_scratch_open(br_scratch *s);
/* The path of name in s, in s->path: valid until the next br_in or br_put on s. */
const char *br_in(br_scratch *s, const char *name);
/* Writes text to name in s; returns its path (s->path, as br_in). */
const char *br_put(br_scratch *s, const char *name, const char *text);
/* The whole file at path ("" if it cannot be read); malloc'd, the caller frees it. */
char *br_slurp(const char *path);
/* Removes every file in s and the directory. */
void br_scratch_close(br_scratch *s);

/* ---- running batchctl ---- */

/* Frees out and err. */
void br_ran_free(br_ran *r);
/* Starts batchctl with args (NULL-terminated, after the program name), in our environment
 * without $BATCHD_SERVER, $NO_COLOR and $TERM, plus env_set (NULL-terminated "K=V" strings,
 * may be NULL). stdout and stderr go to files in s (c.out_path, c.err_path), or with a
 * terminal (tty) to a pseudo-terminal. */
br_child br_spawn(br_scratch *s, const char *const *args, const char *const *env_set, int tty);
/* Waits for c to end (killing it and failing the test after timeout_s) and collects its
 * output; fails the test if a sanitizer reported anything in it. */
br_ran br_finish(br_child *c, double timeout_s);
/* Runs batchctl against h (through $BATCHD_SERVER; with h NULL, an address where nothing
 * listens) to the end; the arguments after s are strings ending with NULL. */
br_ran br_ctl(harness *h, br_scratch *s, ...);
/* Waits until the file at path contains needle (count times); fails after timeout_s. */
void br_wait_for(const char *path, const char *needle, int count, double timeout_s);

/* ---- what batchd holds ---- */

/* The number of batches ListBatches returns. */
size_t br_n_batches(harness *h);
/* The only batch on h, or the newest. Caller frees. */
Batch__V1__Batch *br_newest(harness *h);
/* The value of label key in b's options (owned by b), or NULL. */
const char *br_label(const Batch__V1__Batch *b, const char *key);
/* The operations of batch id (only those whose item is in state, unless 0), in input order,
 * from ListOperations (at most 256). Free with br_ops_free. */
br_ops *br_operations(harness *h, const char *id, int state);
void br_ops_free(br_ops *ops);

/* ---- JSON lines ---- */

/* Parses every line of text into j (at most 256); fails the test on a line that is not JSON. */
void br_jlines_parse(br_jlines *j, const char *text);
void br_jlines_free(br_jlines *j);
/* The string member key of o (owned by o), or "". */
const char *br_jstr(const json_t *o, const char *key);

/* ---- the proxy ---- */

/* Listens on an ephemeral loopback port (p->port) and forwards to target_port. */
br_proxy *br_proxy_start(int target_port);
/* Cuts every connection and refuses new ones for pause_ms; then forwards to target_port
 * unless it is 0. */
void br_proxy_break(br_proxy *p, int pause_ms, int target_port);
/* Connections forwarded so far. */
int br_proxy_accepted(br_proxy *p);
/* Cuts every connection, joins the thread and frees p. */
void br_proxy_stop(br_proxy *p);
/* The port of a "host:port" address. */
int br_port_of(const char *addr);

#endif
