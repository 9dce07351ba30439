/* HTTP(S) targets through libcurl's multi-socket interface on the libev loop. */
#ifndef BATCHD_HTTP_H
#define BATCHD_HTTP_H

#include <ev.h>
#include <stddef.h>

#include "target.h"

typedef struct http_client http_client;

/* One libcurl multi handle for every HTTP target, so connections and DNS are shared.
 * max_connections sizes curl's connection cache. NULL with a message in err on failure.
 * Call once curl_global_init has run. */
http_client *http_client_new(struct ev_loop *loop, size_t max_connections, char *err, size_t errlen);
/* Frees the client; every transfer must have ended or been cancelled. */
void http_client_free(http_client *c);

/* Makes t an HTTP target of c for cfg (borrowed; must outlive t). */
void http_target_init(target *t, http_client *c, const target_config *cfg);

#endif
