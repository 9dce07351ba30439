/* libcurl's own ceiling on this machine: the naive multi loop (64 reused easy handles,
 * curl_multi_perform + curl_multi_poll), no batchd at all. tools/bench/run prints it next
 * to batchd's figure, so batchd's own overhead can be read off (libcurl-on-libev notes).
 *
 *   curl_ceiling URL ITEMS CONCURRENCY   ->  items=N items_per_s=R */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>

#include "pbtime.h"

static size_t discard(char *p, size_t size, size_t n, void *u) { return size * n; }

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: curl_ceiling URL ITEMS CONCURRENCY\n");
        return 2;
    }
    const char *url = argv[1];
    long items = atol(argv[2]), conc = atol(argv[3]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    CURL **h = calloc((size_t)conc, sizeof *h);
    long started = 0, done = 0, failed = 0;
    for (long i = 0; i < conc && started < items; i++, started++) {
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h[i], CURLOPT_PROXY, "");
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, discard);
        curl_multi_add_handle(m, h[i]);
    }
    int64_t t0 = pbtime_mono_ns();
    while (done < items) {
        int running;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            failed += msg->data.result != CURLE_OK;
            done++;
            curl_multi_remove_handle(m, e);
            if (started < items) { /* the same handle, its options kept: the cheapest reuse */
                started++;
                curl_multi_add_handle(m, e);
            }
        }
        if (done < items)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    double s = (pbtime_mono_ns() - t0) / 1e9;
    printf("items=%ld failed=%ld items_per_s=%.0f\n", items, failed, items / s);
    for (long i = 0; i < conc; i++)
        if (h[i])
            curl_easy_cleanup(h[i]);
    free(h);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
