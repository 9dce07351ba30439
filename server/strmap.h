/* A string-keyed hash map (open addressing, linear probing, tombstone-free deletion by
 * backward shift). Keys are copied; values are borrowed pointers. Loop thread only. */
#ifndef BATCHD_STRMAP_H
#define BATCHD_STRMAP_H

#include <stddef.h>

typedef struct strmap_entry {
    char *key;   /* NULL: empty slot */
    void *value;
} strmap_entry;

typedef struct strmap {
    strmap_entry *slots;
    size_t cap, count;
} strmap;

void strmap_init(strmap *m);
/* Frees the map; free_value (may be NULL) is called on every value. */
void strmap_free(strmap *m, void (*free_value)(void *));
void *strmap_get(const strmap *m, const char *key);
/* Sets key to value (replacing any). Returns 0, or -1 on ENOMEM (the map is unchanged). */
int strmap_put(strmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *strmap_remove(strmap *m, const char *key);
/* Removes every entry for which drop(value, arg) returns nonzero, passing its value to
 * free_value (may be NULL). Returns how many went. */
size_t strmap_sweep(strmap *m, int (*drop)(void *value, void *arg), void *arg, void (*free_value)(void *));
size_t strmap_count(const strmap *m);

#endif
