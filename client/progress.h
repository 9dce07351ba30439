/* The progress display on stderr while a batch runs: on a terminal a bar redrawn in place
 * at most 10 times a second (done/total, percent, succeeded/failed, items per second, ETA);
 * otherwise a plain line every few seconds; then a summary line. Times are passed in
 * (monotonic ns) so that tests can drive it. */
#ifndef BATCHCTL_PROGRESS_H
#define BATCHCTL_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

#include "batch/v1/batch.pb-c.h"

#define PROGRESS_BAR_INTERVAL_NS 100000000LL   /* 10 redraws a second at most */
#define PROGRESS_RATE_WINDOW_NS 5000000000LL   /* items/s is measured over this much */
#define PROGRESS_SAMPLES 64

typedef enum progress_mode {
    PROGRESS_OFF,    /* --quiet: nothing, not even the summary */
    PROGRESS_BAR,    /* a terminal: one line redrawn with \r */
    PROGRESS_LINES,  /* a pipe or file: a line every interval */
} progress_mode;

typedef struct progress_config {
    progress_mode mode;
    int color;               /* ANSI colours (never with NO_COLOR or TERM=dumb) */
    int ansi;                /* erase lines with ESC[K (not on TERM=dumb) */
    int width;               /* terminal columns */
    int64_t line_interval_ns;
} progress_config;

/* The display for stderr: is_tty from isatty, term and no_color from $TERM and $NO_COLOR
 * (NULL when unset; NO_COLOR counts when set to anything but ""), width from the terminal
 * (0: unknown, 80 is used). */
void progress_choose(progress_config *cfg, int is_tty, const char *term, const char *no_color, int quiet,
                     int width, int64_t line_interval_ns);

typedef struct progress {
    FILE *f;
    progress_config cfg;
    char id[40];
    uint32_t total, succeeded, failed, cancelled;
    int seen;                 /* a batch was shown */
    int drawn;                /* something was drawn at last_draw_ns */
    int on_screen;            /* a bar is drawn and its line not ended */
    int drawn_len;            /* characters of the bar line, to blank it without ESC[K */
    int64_t last_draw_ns;
    int64_t start_ns;
    struct { int64_t t; uint32_t done; } samples[PROGRESS_SAMPLES];
    unsigned n_samples, head;
} progress;

/* f is borrowed (stderr). */
void progress_init(progress *p, FILE *f, const progress_config *cfg, int64_t now_ns);
/* A new state of the batch (a snapshot or progress event). Draws when due. */
void progress_update(progress *p, const Batch__V1__Batch *b, int64_t now_ns);
/* Time passed without news: draws when due (the rate and ETA move). */
void progress_tick(progress *p, int64_t now_ns);
/* A message on a line of its own (a bar on screen is erased first and comes back at the
 * next draw). Shown in every mode but PROGRESS_OFF. */
void progress_note(progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The batch ended (final may be NULL when it is not known): the last draw of the bar, its
 * line ended. */
void progress_end(progress *p, const Batch__V1__Batch *final, int64_t now_ns);
/* The summary line of the final batch: state, counts, duration, rate. */
void progress_summary(progress *p, const Batch__V1__Batch *final, int64_t now_ns);
/* Erases a bar on screen, ending its line, e.g. before exiting on an error. */
void progress_clear(progress *p);

/* Items per second over the last PROGRESS_RATE_WINDOW_NS, or a negative value while too
 * little is known. */
double progress_rate(const progress *p, int64_t now_ns);

#endif
