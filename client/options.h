/* batchctl's command line: the commands, one table of flags (with the commands each applies
 * to and its help text), and the parsed result. `batchctl CMD --help` is printed from the
 * same table the parser reads, so it always tells what the parser accepts. */
#ifndef BATCHCTL_OPTIONS_H
#define BATCHCTL_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "input.h"
#include "output.h"

typedef enum bctl_cmd {
    BCTL_CMD_NONE,
    BCTL_CMD_SUBMIT,
    BCTL_CMD_WATCH,
    BCTL_CMD_GET,
    BCTL_CMD_LIST,
    BCTL_CMD_CANCEL,
    BCTL_CMD_RESULTS,
    BCTL_CMD_RETRY,
    BCTL_N_CMDS
} bctl_cmd;

#define BCTL_DEFAULT_SERVER "127.0.0.1:50051"

/* Everything the command line said. Strings are borrowed from argv; labels is malloc'd
 * (opt_free). Unset numbers hold the defaults below or -1 where the server decides. */
typedef struct bctl_opts {
    bctl_cmd cmd;
    const char *args[2];        /* positional arguments, see the command table */
    int n_args;

    /* global */
    const char *server;         /* --server, else $BATCHD_SERVER, else BCTL_DEFAULT_SERVER */
    int64_t timeout_ns;         /* deadline of each unary call; per-message wait of streams */

    /* input (submit) */
    input_format format;
    input_csv_spec csv;

    /* batch options (submit, retry); 0 or -1: not given, the server's default applies */
    uint32_t concurrency;
    uint32_t attempts;
    int64_t item_timeout_ns;    /* -1: not given */
    double rate;                /* -1: not given */
    int stop_on_failure;
    const char *target;         /* submit only */
    const char *request_id;
    const char **labels;        /* "KEY=VALUE" (checked); submit/retry: set, list: filter */
    size_t n_labels;
    int validate_only;
    int async;

    /* following a batch (submit, retry, watch) */
    int cancel_on_interrupt;
    int quiet;
    int json;                   /* watch: events as NDJSON; get: JSON; list: NDJSON */
    int64_t reconnect_timeout_ns;
    int64_t progress_interval_ns;

    /* results */
    out_format format_out;      /* OUT_AUTO: from --output's extension, else NDJSON */
    const char *output;         /* NULL or "-": stdout */
    int item_state;             /* results --state; 0: all */
    int batch_state;            /* list --state; 0: all */
    uint32_t limit;             /* list: 0 = all */
} bctl_opts;

/* What opt_parse decided. */
typedef enum opt_result {
    OPT_RUN,      /* run o->cmd */
    OPT_DONE,     /* --help or --version was printed: exit 0 */
    OPT_USAGE,    /* a usage error was printed to err: exit 1 */
} opt_result;

/* Parses argv (argv[0] is the program). Global flags may come before or after the
 * command; a command's flags come after it. env_server is $BATCHD_SERVER (may be NULL).
 * Help and version go to out, errors to err. Call opt_free afterwards whatever it returns. */
opt_result opt_parse(bctl_opts *o, int argc, char **argv, const char *env_server, FILE *out, FILE *err);
void opt_free(bctl_opts *o);

/* Help of one command, or of batchctl itself for BCTL_CMD_NONE. */
void opt_usage(FILE *f, bctl_cmd cmd);
const char *opt_cmd_name(bctl_cmd cmd);


/* Splits "KEY=VALUE" (checked by the parser) into a key of *key_len bytes and the value. */
const char *opt_label_value(const char *label, size_t *key_len);

#endif
