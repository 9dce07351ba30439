/* A set of strings (item ids), for `retry` to pick the operations to submit again. */
#ifndef BATCHCTL_IDSET_H
#define BATCHCTL_IDSET_H

#include <stddef.h>

typedef struct idset {
    char **slots;      /* open addressing; NULL: empty */
    size_t cap, n;
} idset;

/* Adds a copy of id. 0, or -1 on ENOMEM. Adding an id twice keeps one. */
int idset_add(idset *s, const char *id);
int idset_has(const idset *s, const char *id);
void idset_free(idset *s);

#endif
