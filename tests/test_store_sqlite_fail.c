/* The SQLite store engine's failure modes: recovery of half-written batches, start-time
 * refusals (corrupt file, newer schema, read-only directory or file), run-time disk full,
 * close while writes fail, writes SQLite refuses for their content.
 *
 * Some need root: a read-only bind mount, the immutable attribute, a small tmpfs (as root,
 * chmod does not stop writes). They run in a private mount namespace, so a crashed test
 * leaves no mount behind; without the privilege they are skipped, saying why. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pbtime.h"
#include "store_harness.h"

/* ---- recovery and start-time errors ---------------------------------------------------------- */

Test(store_sqlite_fail, loading_leftover_deleted_at_open)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, 2, "kept");
    sqt_put_batch_durable(&t, b);
    sqt_close(&t);
    /* What a crash in the middle of a chunked put_batch leaves: the row still LOADING,
     * some ops, even a result. */
    sqt_raw_exec(t.path, "INSERT INTO batches(bno, id, created_ns, state, snapshot, total, phase, request_id)"
                     " VALUES(99, 'HALFWRITTEN', 1, 1, x'', 100000, 1, 'r-half');"
                     "INSERT INTO ops(bno, idx, op) VALUES(99, 0, x'01'), (99, 1, x'02');"
                     "INSERT INTO results(bno, idx, seq, state, result) VALUES(99, 0, 1, 3, x'03');");
    sqt_open(&t, 1);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_str_eq(L.v[0].snap->id, b->id);
    sqt_loaded_free(&L);
    sqt_close(&t);
    cr_assert_eq(sqt_raw_int(t.path, "SELECT count(*) FROM batches WHERE bno = 99"), 0);
    cr_assert_eq(sqt_raw_int(t.path, "SELECT count(*) FROM ops WHERE bno = 99"), 0);
    cr_assert_eq(sqt_raw_int(t.path, "SELECT count(*) FROM results WHERE bno = 99"), 0);
    sqt_free(&t);
}

static void scribble(const char *path, off_t at, size_t len)
{
    int fd = open(path, O_WRONLY);
    cr_assert_geq(fd, 0);
    uint8_t *junk = malloc(len);
    uint32_t x = 12345;
    for (size_t k = 0; k < len; k++)
        junk[k] = (uint8_t)((x = x * 1103515245 + 12345) >> 16);
    cr_assert_eq(pwrite(fd, junk, len, at), (ssize_t)len);
    close(fd);
    free(junk);
}

/* A store with one unfinished batch whose ~600 KB of operations recovery must read. */
static void store_with_data(sqt_ctx *t)
{
    sqt_open(t, 1);
    batch *b = sqt_make_batch(t, 2000, NULL);
    sqt_put_batch_durable(t, b);
    sqt_close(t);
}

Test(store_sqlite_fail, corrupt_header_refused)
{
    sqt_ctx t;
    sqt_init(&t);
    store_with_data(&t);
    scribble(t.path, 0, 100);
    char err[512] = "";
    t.st = sqt_try_open(&t, 1, err, sizeof err);
    cr_assert_null(t.st, "a store with a destroyed header opened");
    cr_log_info("%s", err);
    cr_assert_not_null(strstr(err, t.path), "error does not name the file: %s", err);
    cr_assert_not_null(strstr(err, "not a database"), "not SQLite's message: %s", err);
    sqt_free(&t);
}

Test(store_sqlite_fail, corrupt_page_refused)
{
    sqt_ctx t;
    sqt_init(&t);
    store_with_data(&t);
    struct stat sb;
    cr_assert_eq(stat(t.path, &sb), 0);
    off_t page = (off_t)sqt_raw_int(t.path, "PRAGMA page_size"), pages = sb.st_size / page;
    cr_assert_gt(pages, 20);
    scribble(t.path, (pages / 2) * page, (size_t)page);
    /* Start is open + load: one of them must refuse, naming the file. */
    char err[512] = "";
    t.st = sqt_try_open(&t, 1, err, sizeof err);
    if (t.st) {
        sqt_loaded L = {0};
        store_err e = t.st->ops->load(t.st, sqt_on_loaded, &L, err, sizeof err);
        sqt_loaded_free(&L);
        cr_assert_eq(e, STORE_ECORRUPT, "a damaged sqt_page in the middle went unnoticed");
    }
    cr_log_info("%s", err);
    cr_assert_not_null(strstr(err, t.path), "error does not name the file: %s", err);
    cr_assert_not_null(strstr(err, "malformed"), "not SQLite's message: %s", err);
    sqt_free(&t);
}

Test(store_sqlite_fail, newer_schema_refused)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    sqt_close(&t);
    sqt_raw_exec(t.path, "PRAGMA user_version = 2");
    char err[512] = "";
    t.st = sqt_try_open(&t, 1, err, sizeof err);
    cr_assert_null(t.st);
    cr_assert_not_null(strstr(err, "newer batchd"), "%s", err);
    sqt_free(&t);
}

Test(store_sqlite_fail, read_only_directory_refused)
{
    sqt_ctx t;
    sqt_init(&t);
    if (sqt_private_mounts() != 0)
        cr_skip_test("needs CAP_SYS_ADMIN for a private mount namespace");
    sqt_open(&t, 1);
    sqt_close(&t);
    /* An existing store on a read-only mount: reads would work, writes would not. */
    cr_assert_eq(mount(t.dir, t.dir, NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
    t.mounted = 1;
    cr_assert_eq(mount(NULL, t.dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), 0, "%s", strerror(errno));
    char err[512] = "";
    t.st = sqt_try_open(&t, 1, err, sizeof err);
    cr_assert_null(t.st, "a store on a read-only mount opened");
    cr_log_info("%s", err);
    cr_assert_not_null(strstr(err, t.path), "%s", err);
    sqt_free(&t);
}

Test(store_sqlite_fail, read_only_new_directory_refused)
{
    sqt_ctx t;
    sqt_init(&t);
    if (sqt_private_mounts() != 0)
        cr_skip_test("needs CAP_SYS_ADMIN for a private mount namespace");
    cr_assert_eq(mount(t.dir, t.dir, NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
    t.mounted = 1;
    cr_assert_eq(mount(NULL, t.dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), 0, "%s", strerror(errno));
    char err[512] = "";
    t.st = sqt_try_open(&t, 1, err, sizeof err);
    cr_assert_null(t.st, "a new store in a read-only directory opened");
    cr_log_info("%s", err);
    cr_assert_not_null(strstr(err, t.path), "%s", err);
    sqt_free(&t);
}

static int set_immutable(const char *path, int on)
{
    int fd = open(path, O_RDONLY);
    int flags = 0, rc = -1;
    if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        rc = ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* As root, chmod 0400 does not stop writes; the immutable attribute (chattr +i) does. */
Test(store_sqlite_fail, read_only_file_refused)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 1);
    sqt_close(&t);
    if (set_immutable(t.path, 1) != 0)
        cr_skip_test("cannot set the immutable attribute here: %s", strerror(errno));
    char err[512] = "";
    t.st = sqt_try_open(&t, 1, err, sizeof err);
    set_immutable(t.path, 0); /* before any assert: an immutable file cannot be removed */
    cr_assert_null(t.st, "a store in a read-only file opened");
    cr_log_info("%s", err);
    cr_assert_not_null(strstr(err, t.path), "%s", err);
    cr_assert_not_null(strstr(err, "readonly"), "%s", err);
    sqt_free(&t);
}

/* Disk full at run time: a 1 MB tmpfs fills up, writes are held (not lost, not
 * acknowledged), health goes 0; once the tmpfs grows they all complete, health 1. */
Test(store_sqlite_fail, disk_full_holds_writes_until_space_returns, .timeout = 120)
{
    enum { N = 400 };
    sqt_ctx t;
    sqt_init(&t);
    if (sqt_private_mounts() != 0)
        cr_skip_test("needs CAP_SYS_ADMIN for a private mount namespace");
    cr_assert_eq(mount("tmpfs", t.dir, "tmpfs", 0, "size=1m"), 0, "%s", strerror(errno));
    t.mounted = 1;
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, N, NULL);
    sqt_put_batch_durable(&t, b);
    sqt_done *d = calloc(N, sizeof *d);
    for (uint32_t i = 0; i < N; i++) { /* 4 KB each: 1.6 MB in all */
        d[i] = (sqt_done){.t = &t};
        sqt_finish_item(b, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 4096);
        store_put_result(t.st, b, i, NULL, sqt_on_done, &d[i]);
    }
    cr_assert(sqt_run_until(&t, &t.n_health, 1, 30), "health never turned 0");
    cr_assert_eq(t.health[0], 0);
    cr_assert_eq(store_healthy(t.st), 0);
    int done_while_full = t.n_done;
    cr_assert_lt(done_while_full, N + 1, "everything was acknowledged on a full disk");
    for (uint32_t i = 0; i < N; i++)
        cr_assert(d[i].calls == 0 || d[i].err == STORE_OK, "a write failed instead of being held");

    cr_assert_eq(mount(NULL, t.dir, NULL, MS_REMOUNT, "size=64m"), 0, "%s", strerror(errno));
    cr_assert(sqt_run_until(&t, &t.n_done, N + 1, 30), "held writes did not complete after space returned");
    cr_assert(sqt_run_until(&t, &t.n_health, 2, 5));
    cr_assert_eq(t.health[1], 1);
    cr_assert_eq(store_healthy(t.st), 1);
    for (uint32_t i = 0; i < N; i++) {
        cr_assert_eq(d[i].calls, 1);
        cr_assert_eq(d[i].err, STORE_OK);
        cr_assert_eq(d[i].order, (int)i + 1, "completions out of order after the retry");
    }
    cr_assert_gt(sqt_stats(&t).retries, 0);
    sqt_close(&t);

    sqt_open(&t, 1);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_eq(L.v[0].n_results, N, "writes were lost");
    for (uint32_t i = 0; i < N; i++)
        cr_assert(sqt_blob_ok(L.v[0].results[i].result, i, 4096));
    sqt_loaded_free(&L);
    free(d);
    sqt_free(&t);
}

/* close() while the disk stays full: the writer keeps retrying for a while, then gives up;
 * the writes it could not make get STORE_ECLOSED (never acknowledged, so nothing that was
 * promised is lost), those it made STORE_OK, and close returns. */
Test(store_sqlite_fail, close_while_disk_full_reports_closed, .timeout = 60)
{
    enum { N = 400 };
    sqt_ctx t;
    sqt_init(&t);
    if (sqt_private_mounts() != 0)
        cr_skip_test("needs CAP_SYS_ADMIN for a private mount namespace");
    cr_assert_eq(mount("tmpfs", t.dir, "tmpfs", 0, "size=1m"), 0, "%s", strerror(errno));
    t.mounted = 1;
    sqt_open(&t, 1);
    batch *b = sqt_make_batch(&t, N, NULL);
    sqt_put_batch_durable(&t, b);
    sqt_done *d = calloc(N, sizeof *d);
    for (uint32_t i = 0; i < N; i++) {
        d[i] = (sqt_done){.t = &t};
        sqt_finish_item(b, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 4096);
        store_put_result(t.st, b, i, NULL, sqt_on_done, &d[i]);
    }
    cr_assert(sqt_run_until(&t, &t.n_health, 1, 30), "health never turned 0");
    int64_t t0 = pbtime_mono_ns();
    sqt_close(&t);
    double secs = (double)(pbtime_mono_ns() - t0) / 1e9;
    cr_log_info("close took %.1f s with the disk full", secs);
    cr_assert_lt(secs, 15.0);
    cr_assert_eq(t.n_done, N + 1, "a callback never ran");
    int ok = 0, closed = 0;
    for (uint32_t i = 0; i < N; i++) {
        cr_assert(d[i].err == STORE_OK || d[i].err == STORE_ECLOSED);
        if (d[i].err == STORE_OK) {
            cr_assert_eq(closed, 0, "an acknowledged write after one that was not");
            ok++;
        } else {
            closed++;
        }
    }
    cr_assert_gt(closed, 0);

    /* With space again, every acknowledged result is there. */
    cr_assert_eq(mount(NULL, t.dir, NULL, MS_REMOUNT, "size=64m"), 0, "%s", strerror(errno));
    sqt_open(&t, 1);
    sqt_loaded L;
    sqt_load_all(&t, &L);
    cr_assert_eq(L.n, 1);
    cr_assert_geq(L.v[0].n_results, (size_t)ok);
    sqt_loaded_free(&L);
    free(d);
    sqt_free(&t);
}

/* A write SQLite refuses for its content (here the unique request_id, which the layer
 * above should have caught) fails alone with STORE_EIO; it does not block the queue in
 * endless retries, and health stays 1. */
Test(store_sqlite_fail, refused_write_fails_alone)
{
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 0);
    batch *a = sqt_make_batch(&t, 2, "same"), *dup = sqt_make_batch(&t, 2, "same");
    sqt_put_batch_durable(&t, a);
    sqt_done pd = {.t = &t}, r = {.t = &t};
    store_put_batch(t.st, dup, sqt_on_done, &pd);
    sqt_finish_item(a, 0, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 8);
    store_put_result(t.st, a, 0, NULL, sqt_on_done, &r);
    cr_assert(sqt_run_until(&t, &r.calls, 1, 10));
    cr_assert(sqt_run_until(&t, &pd.calls, 1, 10));
    cr_assert_eq(pd.err, STORE_EIO);
    cr_assert_eq(r.err, STORE_OK);
    cr_assert_eq(sqt_stats(&t).rejected, 1);
    cr_assert_eq(sqt_stats(&t).retries, 0);
    cr_assert_eq(store_healthy(t.st), 1);
    cr_assert_eq(t.n_health, 0);
    sqt_free(&t);
}

/* Results are inserted several to a statement; when SQLite refuses one row of such a
 * statement (here a trigger standing in for a bug), the group is written again one row
 * per statement, so that only the refused result fails and the others are stored. */
Test(store_sqlite_fail, refused_row_of_a_grouped_insert_fails_alone)
{
    enum { N = 20, BAD = 5 };
    sqt_ctx t;
    sqt_init(&t);
    sqt_open(&t, 0);
    batch *b = sqt_make_batch(&t, N, NULL);
    sqt_put_batch_durable(&t, b);
    sqt_close(&t);
    sqt_raw_exec(t.path, "CREATE TRIGGER refuse BEFORE INSERT ON results WHEN NEW.idx = 5"
                         " BEGIN SELECT RAISE(ABORT, 'refused for the test'); END");
    sqt_open(&t, 0);
    sqt_done d[N];
    for (uint32_t i = 0; i < N; i++) { /* one loop turn: one group */
        d[i] = (sqt_done){.t = &t};
        sqt_finish_item(b, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 32);
        store_put_result(t.st, b, i, NULL, sqt_on_done, &d[i]);
    }
    cr_assert(sqt_run_until(&t, &t.n_done, N, 20));
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq(d[i].err, i == BAD ? STORE_EIO : STORE_OK, "result %u: error %d", i, d[i].err);
    cr_assert_eq(sqt_stats(&t).rejected, 1);
    cr_assert_eq(sqt_stats(&t).retries, 0);
    cr_assert_eq(store_healthy(t.st), 1);
    sqt_close(&t);
    cr_assert_eq(sqt_raw_int(t.path, "SELECT count(*) FROM results"), N - 1);
    cr_assert_eq(sqt_raw_int(t.path, "SELECT count(*) FROM results WHERE idx = 5"), 0);
    sqt_free(&t);
}

/* kill -9 at arbitrary points. A child stores two batches, then streams their results
 * (in sequence order, as the executor does) and meanwhile a 30,000-op batch, until it is
 * killed. After each kill, every batch's durable results are exactly sequences 1..n of
 * the items that finished first (the prefix watchers resume from), and the big batch is
 * either complete or absent (never half there). */
enum { CRASH_ITEMS = 40000, CRASH_BIG = 30000 };

static void crash_child(const char *dir, int sync_full, int ready_fd)
{
    sqt_ctx t;
    char err[512];
    memset(&t, 0, sizeof t);
    snprintf(t.dir, sizeof t.dir, "%s", dir);
    t.loop = ev_loop_new(EVFLAG_AUTO);
    batch_registry_init(&t.reg);
    if ((t.st = sqt_try_open(&t, sync_full, err, sizeof err)) == NULL)
        _exit(2);
    batch *a = sqt_make_batch(&t, CRASH_ITEMS, NULL), *b = sqt_make_batch(&t, CRASH_ITEMS, NULL);
    sqt_done da = {.t = &t}, db = {.t = &t};
    store_put_batch(t.st, a, sqt_on_done, &da);
    store_put_batch(t.st, b, sqt_on_done, &db);
    while (t.n_done < 2)
        ev_run(t.loop, EVRUN_ONCE);
    batch *big = sqt_make_batch(&t, CRASH_BIG, NULL);
    if (write(ready_fd, "r", 1) != 1)
        _exit(3);
    for (uint32_t i = 0; i < CRASH_ITEMS; i++) {
        sqt_finish_item(a, i, BATCH__V1__ITEM_STATE__ITEM_STATE_SUCCEEDED, 64);
        store_put_result(t.st, a, i, NULL, NULL, NULL);
        sqt_finish_item(b, i, BATCH__V1__ITEM_STATE__ITEM_STATE_FAILED, 64);
        store_put_result(t.st, b, i, NULL, NULL, NULL);
        if (i == 2000)
            store_put_batch(t.st, big, NULL, NULL);
        if (i % 256 == 0)
            ev_run(t.loop, EVRUN_NOWAIT); /* callbacks, as the loop would run them */
    }
    for (;;)
        ev_run(t.loop, EVRUN_ONCE); /* until killed */
}

static void check_after_crash(sqt_ctx *t, int round)
{
    sqt_loaded L;
    sqt_open(t, 1);
    sqt_load_all(t, &L);
    size_t small = 0;
    for (size_t k = 0; k < L.n; k++) {
        sqt_loaded_batch *lb = &L.v[k];
        if (lb->n_ops == CRASH_BIG) { /* the big one: whole or absent */
            cr_assert_eq(lb->n_results, 0);
            continue;
        }
        cr_assert_eq(lb->n_ops, CRASH_ITEMS, "round %d: a batch of %u ops", round, lb->n_ops);
        small++;
        /* Index order from load; item i finished i-th, so it must have sequence i + 1,
         * and the recorded items must be 0..n-1: a prefix, no gap. */
        for (size_t r = 0; r < lb->n_results; r++) {
            cr_assert_eq(lb->results[r].index, r, "round %d: a gap before index %u", round, lb->results[r].index);
            cr_assert_eq(lb->results[r].seq, r + 1, "round %d: item %zu has sequence %u", round, r,
                         lb->results[r].seq);
            cr_assert(sqt_blob_ok(lb->results[r].result, (uint32_t)r, 64));
        }
        cr_log_info("round %d: a batch with %zu durable results", round, lb->n_results);
    }
    cr_assert_eq(small, 2, "round %d: the acknowledged batches are not both there", round);
    sqt_loaded_free(&L);
    sqt_close(t);
}

Test(store_sqlite_fail, kill_9_leaves_sequence_prefixes_and_whole_batches, .timeout = 120)
{
    static const int delays_ms[] = {5, 40, 120, 250, 400, 700};
    sqt_ctx t;
    sqt_init(&t);
    for (int round = 0; round < 6; round++) {
        /* Each round on a fresh database, alternating FULL and NORMAL: a process kill
         * loses nothing committed under either (only power loss separates them). */
        char path[128];
        snprintf(path, sizeof path, "%s/batchd.db", t.dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/batchd.db-wal", t.dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/batchd.db-shm", t.dir);
        unlink(path);
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(t.dir, round % 2, fds[1]);
        }
        close(fds[1]);
        char c;
        cr_assert_eq(read(fds[0], &c, 1), 1, "the child did not get going");
        close(fds[0]);
        struct timespec d = {0, delays_ms[round] * 1000000L};
        while (d.tv_nsec >= 1000000000L) {
            d.tv_sec++;
            d.tv_nsec -= 1000000000L;
        }
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status), "round %d: the child exited by itself (%d)", round, status);
        check_after_crash(&t, round);
    }
    sqt_free(&t);
}
