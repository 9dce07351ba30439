/* Open-addressing string map with backward-shift deletion (no tombstones, so lookups
 * stay short however many keys come and go, as request ids and item keys do). */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

void strmap_init(strmap *m) { memset(m, 0, sizeof *m); }

void strmap_free(strmap *m, void (*free_value)(void *))
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key && free_value)
            free_value(m->slots[i].value);
        free(m->slots[i].key);
    }
    free(m->slots);
    memset(m, 0, sizeof *m);
}

size_t strmap_count(const strmap *m) { return m->count; }

static size_t find(const strmap *m, const char *key)
{
    size_t mask = m->cap - 1;
    for (size_t i = hash(key) & mask;; i = (i + 1) & mask)
        if (m->slots[i].key == NULL || strcmp(m->slots[i].key, key) == 0)
            return i;
}

void *strmap_get(const strmap *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    size_t i = find(m, key);
    return m->slots[i].key ? m->slots[i].value : NULL;
}

static int grow(strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    strmap_entry *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return -1;
    strmap old = *m;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key)
            m->slots[find(m, old.slots[i].key)] = old.slots[i];
    free(old.slots);
    return 0;
}

int strmap_put(strmap *m, const char *key, void *value)
{
    if ((m->count + 1) * 4 > m->cap * 3 && grow(m) < 0) /* load factor 3/4 */
        return -1;
    size_t i = find(m, key);
    if (m->slots[i].key == NULL) {
        if ((m->slots[i].key = strdup(key)) == NULL)
            return -1;
        m->count++;
    }
    m->slots[i].value = value;
    return 0;
}

/* Empties slot i and shifts back the entries of the probe run that follows it, so none
 * becomes unreachable. Returns the value that was there. */
static void *remove_at(strmap *m, size_t i)
{
    size_t mask = m->cap - 1;
    void *value = m->slots[i].value;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->count--;
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = hash(m->slots[j].key) & mask;
        /* j's entry may move to i when its home is not within (i, j] cyclically. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            m->slots[i] = m->slots[j];
            m->slots[j].key = NULL;
            i = j;
        }
    }
    return value;
}

size_t strmap_sweep(strmap *m, int (*drop)(void *value, void *arg), void *arg, void (*free_value)(void *))
{
    size_t n = 0;
    /* A removal may shift a later entry into slot i: look at slot i again after it. An
     * entry shifted in from a wrapped-around slot was seen already and is kept again. */
    for (size_t i = 0; i < m->cap;) {
        if (m->slots[i].key && drop(m->slots[i].value, arg)) {
            void *v = remove_at(m, i);
            if (free_value)
                free_value(v);
            n++;
        } else {
            i++;
        }
    }
    return n;
}

void *strmap_remove(strmap *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    size_t i = find(m, key);
    return m->slots[i].key ? remove_at(m, i) : NULL;
}
