/* batchd-upstream: the test upstream as a program, for demos, scripts and benchmarks.
 * Serves until SIGINT or SIGTERM; the behaviour of each request is described in upstream.h. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream.h"

struct options {
    const char *listen;
    int port;
    const char *port_file;
};

static const struct option option_table[] = {
    {"port", required_argument, NULL, 'p'},
    {"listen", required_argument, NULL, 'l'},
    {"port-file", required_argument, NULL, 'f'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fputs("usage: batchd-upstream [--port N] [--listen ADDR] [--port-file FILE]\n"
          "\n"
          "A controllable HTTP/1.1 server for batchd's tests, demos and benchmarks.\n"
          "\n"
          "  -p, --port N          port to listen on (default 8080; 0 picks a free one)\n"
          "  -l, --listen ADDR     numeric address to bind (default 127.0.0.1)\n"
          "  -f, --port-file FILE  write the bound port to FILE once listening\n"
          "  -h, --help            show this help\n"
          "\n"
          "Each request says how to answer through its query string:\n"
          "  status=N delay_ms=N body=TEXT size=N chunked=1 retry_after=S drop=1 echo=1\n"
          "  fail_first=N [fail_status=N]  (per Idempotency-Key, else per path and query)\n"
          "GET /echo describes the request as JSON; GET /_stats gives the counters;\n"
          "POST /_reset clears them. Stops on SIGINT or SIGTERM.\n",
          out);
}

/* Returns 0 to run, 1 after --help, 2 on a usage error (already reported). */
static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){.listen = "127.0.0.1", .port = 8080};
    int ch;
    while ((ch = getopt_long(argc, argv, "p:l:f:h", option_table, NULL)) != -1) {
        switch (ch) {
        case 'p': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 0 || v > 65535) {
                fprintf(stderr, "batchd-upstream: bad port '%s'\n", optarg);
                return 2;
            }
            o->port = (int)v;
            break;
        }
        case 'l':
            o->listen = optarg;
            break;
        case 'f':
            o->port_file = optarg;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "batchd-upstream: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

/* Written to a temporary name and renamed, so a script polling for the file never reads half. */
static int write_port_file(const char *path, int port)
{
    size_t n = strlen(path) + 8;
    char *tmp = malloc(n);
    if (!tmp)
        return -1;
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (!f)
        goto out;
    int wrote = fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || wrote < 0 || rename(tmp, path) != 0) {
        remove(tmp);
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;

    /* Block the stop signals before the server thread exists so it inherits the mask and
     * they can only arrive here, in sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    upstream_config cfg = {.host = o.listen, .port = o.port};
    upstream *u = upstream_start(&cfg);
    if (!u) {
        fprintf(stderr, "batchd-upstream: cannot listen on %s:%d: %s\n", o.listen, o.port,
                strerror(errno));
        return 1;
    }
    int port = upstream_port(u);
    if (o.port_file && write_port_file(o.port_file, port) < 0) {
        fprintf(stderr, "batchd-upstream: cannot write %s: %s\n", o.port_file, strerror(errno));
        upstream_stop(u);
        return 1;
    }
    printf(strchr(o.listen, ':') ? "listening on [%s]:%d\n" : "listening on %s:%d\n", o.listen, port);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    upstream_stats s;
    upstream_get_stats(u, &s);
    upstream_stop(u);
    fprintf(stderr, "batchd-upstream: %s, stopped after %llu requests on %llu connections\n",
            strsignal(sig), (unsigned long long)s.requests, (unsigned long long)s.connections);
    return 0;
}
