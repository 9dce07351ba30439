/* The progress bar and progress lines (see progress.h). */
#include "progress.h"

#include <stdarg.h>
#include <string.h>

#include "output.h"
#include "pbtime.h"

#define GREEN "\033[32m"
#define RED "\033[31m"
#define RESET "\033[0m"

void progress_choose(progress_config *cfg, int is_tty, const char *term, const char *no_color, int quiet,
                     int width, int64_t line_interval_ns)
{
    memset(cfg, 0, sizeof *cfg);
    int dumb = term == NULL || *term == '\0' || strcmp(term, "dumb") == 0;
    cfg->mode = quiet ? PROGRESS_OFF : is_tty ? PROGRESS_BAR : PROGRESS_LINES;
    cfg->ansi = is_tty && !dumb;
    cfg->color = cfg->ansi && !(no_color && *no_color);
    cfg->width = width > 0 ? width : 80;
    cfg->line_interval_ns = line_interval_ns > 0 ? line_interval_ns : 2 * PBTIME_NS_PER_SEC;
}

void progress_init(progress *p, FILE *f, const progress_config *cfg, int64_t now_ns)
{
    memset(p, 0, sizeof *p);
    p->f = f;
    p->cfg = *cfg;
    p->start_ns = now_ns;
}

static uint32_t done_of(const progress *p)
{
    return p->succeeded + p->failed + p->cancelled;
}

static void sample(progress *p, int64_t now_ns)
{
    unsigned last = (p->head + PROGRESS_SAMPLES - 1) % PROGRESS_SAMPLES;
    if (p->n_samples && now_ns - p->samples[last].t < PROGRESS_BAR_INTERVAL_NS) {
        p->samples[last].done = done_of(p); /* same slot: keep the ring spanning the window */
        return;
    }
    p->samples[p->head].t = now_ns;
    p->samples[p->head].done = done_of(p);
    p->head = (p->head + 1) % PROGRESS_SAMPLES;
    if (p->n_samples < PROGRESS_SAMPLES)
        p->n_samples++;
}

double progress_rate(const progress *p, int64_t now_ns)
{
    if (p->n_samples < 2)
        return -1;
    unsigned last = (p->head + PROGRESS_SAMPLES - 1) % PROGRESS_SAMPLES;
    unsigned first = (p->head + PROGRESS_SAMPLES - p->n_samples) % PROGRESS_SAMPLES;
    /* The oldest sample inside the window (the ring may also be shorter than it). */
    unsigned i = first;
    while (i != last && now_ns - p->samples[i].t > PROGRESS_RATE_WINDOW_NS)
        i = (i + 1) % PROGRESS_SAMPLES;
    if (i == last)
        i = (last + PROGRESS_SAMPLES - 1) % PROGRESS_SAMPLES;
    double dt = (double)(now_ns - p->samples[i].t) / 1e9;
    if (dt < 0.3)
        return -1;
    return (double)(p->samples[last].done - p->samples[i].done) / dt;
}

/* "410/s  ETA 7s" parts. */
static void rate_eta(const progress *p, int64_t now_ns, char *rate, size_t rlen, char *eta, size_t elen)
{
    double r = progress_rate(p, now_ns);
    uint32_t left = p->total - (done_of(p) < p->total ? done_of(p) : p->total);
    snprintf(rate, rlen, r < 0 ? "-" : r < 10 ? "%.1f" : "%.0f", r);
    if (left == 0)
        snprintf(eta, elen, "0s");
    else if (r <= 0)
        snprintf(eta, elen, "-");
    else
        out_duration(eta, elen, (int64_t)(left / r * 1e9));
}

static unsigned percent(const progress *p)
{
    return p->total ? (unsigned)((uint64_t)done_of(p) * 100 / p->total) : 100;
}

static void draw_bar(progress *p, int64_t now_ns)
{
    char rate[24], eta[24], text[192], counts[96];
    rate_eta(p, now_ns, rate, sizeof rate, eta, sizeof eta);
    int plain = snprintf(counts, sizeof counts, "ok %u  failed %u", p->succeeded, p->failed);
    if (p->cancelled)
        plain += snprintf(counts + plain, sizeof counts - (size_t)plain, "  cancelled %u", p->cancelled);
    int tlen = snprintf(text, sizeof text, " %3u%%  %u/%u  %s  %s/s  ETA %s", percent(p), done_of(p), p->total,
                        counts, rate, eta);
    /* The bar keeps one width for the whole batch: sized for the widest text it can have. */
    int digits = snprintf(NULL, 0, "%u", p->total);
    int widest = (int)strlen(" 100%  /  ok   failed   /s  ETA 99m59s") + 4 * digits + 6 +
                 (p->cancelled ? (int)strlen("  cancelled ") + digits : 0);
    int bar = p->cfg.width - (tlen > widest ? tlen : widest) - 3;
    if (bar > 40)
        bar = 40;
    fputc('\r', p->f);
    int len = tlen;
    if (bar >= 10) {
        int fill = p->total ? (int)((uint64_t)done_of(p) * (unsigned)bar / p->total) : bar;
        fputc('[', p->f);
        for (int i = 0; i < bar; i++)
            fputc(i < fill ? '#' : '.', p->f);
        fputc(']', p->f);
        len += bar + 2;
    }
    if (p->cfg.color) {
        fprintf(p->f, " %3u%%  %u/%u  " GREEN "ok %u" RESET "  %sfailed %u%s", percent(p), done_of(p), p->total,
                p->succeeded, p->failed ? RED : "", p->failed, p->failed ? RESET : "");
        if (p->cancelled)
            fprintf(p->f, "  cancelled %u", p->cancelled);
        fprintf(p->f, "  %s/s  ETA %s", rate, eta);
    } else {
        fputs(text, p->f);
    }
    if (p->cfg.ansi)
        fputs("\033[K", p->f);
    else
        for (int i = len; i < p->drawn_len; i++)
            fputc(' ', p->f);
    p->drawn_len = len;
    p->on_screen = 1;
    fflush(p->f);
}

static void draw_line(progress *p, int64_t now_ns)
{
    char rate[24], eta[24];
    rate_eta(p, now_ns, rate, sizeof rate, eta, sizeof eta);
    fprintf(p->f, "batch %s: %u/%u done (%u%%), %u succeeded, %u failed, %u cancelled, %s items/s, ETA %s\n", p->id,
            done_of(p), p->total, percent(p), p->succeeded, p->failed, p->cancelled, rate, eta);
    fflush(p->f);
}

static void draw(progress *p, int64_t now_ns, int force)
{
    if (p->cfg.mode == PROGRESS_OFF || !p->seen)
        return;
    int64_t every = p->cfg.mode == PROGRESS_BAR ? PROGRESS_BAR_INTERVAL_NS : p->cfg.line_interval_ns;
    if (!force && p->drawn && now_ns - p->last_draw_ns < every)
        return;
    p->drawn = 1;
    p->last_draw_ns = now_ns;
    if (p->cfg.mode == PROGRESS_BAR)
        draw_bar(p, now_ns);
    else
        draw_line(p, now_ns);
}

void progress_update(progress *p, const Batch__V1__Batch *b, int64_t now_ns)
{
    int first = !p->seen;
    snprintf(p->id, sizeof p->id, "%s", b->id);
    if (b->counts) {
        p->total = b->counts->total;
        p->succeeded = b->counts->succeeded;
        p->failed = b->counts->failed;
        p->cancelled = b->counts->cancelled;
    }
    p->seen = 1;
    sample(p, now_ns);
    draw(p, now_ns, first);
}

void progress_tick(progress *p, int64_t now_ns)
{
    if (p->seen)
        sample(p, now_ns);
    draw(p, now_ns, 0);
}

void progress_clear(progress *p)
{
    if (!p->on_screen)
        return;
    if (p->cfg.ansi) {
        fputs("\r\033[K", p->f);
    } else {
        fputc('\r', p->f);
        for (int i = 0; i < p->drawn_len; i++)
            fputc(' ', p->f);
        fputc('\r', p->f);
    }
    p->on_screen = 0;
    p->drawn_len = 0;
    fflush(p->f);
}

void progress_note(progress *p, const char *fmt, ...)
{
    if (p->cfg.mode == PROGRESS_OFF)
        return;
    progress_clear(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->f, fmt, ap);
    va_end(ap);
    fputc('\n', p->f);
    if (p->cfg.mode == PROGRESS_BAR)
        p->drawn = 0; /* bring the bar back at the next chance */
    fflush(p->f);
}

void progress_end(progress *p, const Batch__V1__Batch *final, int64_t now_ns)
{
    if (p->cfg.mode == PROGRESS_OFF)
        return;
    if (final)
        progress_update(p, final, now_ns);
    if (p->cfg.mode == PROGRESS_BAR && p->seen) {
        draw(p, now_ns, 1);
        fputc('\n', p->f);
        p->on_screen = 0;
        fflush(p->f);
    }
}

void progress_summary(progress *p, const Batch__V1__Batch *final, int64_t now_ns)
{
    if (p->cfg.mode == PROGRESS_OFF)
        return;
    char took[32];
    int64_t ns = now_ns - p->start_ns;
    if (final->start_time && final->end_time)
        ns = pbtime_timestamp_ns(final->end_time) - pbtime_timestamp_ns(final->start_time);
    out_duration(took, sizeof took, ns);
    int ok = final->state == BATCH__V1__BATCH_STATE__BATCH_STATE_SUCCEEDED;
    double per_s = ns > 0 ? (double)done_of(p) / ((double)ns / 1e9) : 0;
    fprintf(p->f, "batch %s %s%s%s: %u succeeded, %u failed, %u cancelled of %u in %s (%.0f items/s)\n", p->id,
            p->cfg.color ? (ok ? GREEN : RED) : "", out_batch_state(final->state), p->cfg.color ? RESET : "",
            p->succeeded, p->failed, p->cancelled, p->total, took, per_s);
    fflush(p->f);
}
