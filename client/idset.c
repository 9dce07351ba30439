/* A string set with open addressing and linear probing, kept at most half full. */
#include "idset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static size_t find(char *const *slots, size_t cap, const char *id)
{
    size_t i = (size_t)hash(id) & (cap - 1);
    while (slots[i] && strcmp(slots[i], id) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

int idset_add(idset *s, const char *id)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **slots = calloc(cap, sizeof *slots);
        if (slots == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i])
                slots[find(slots, cap, s->slots[i])] = s->slots[i];
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t i = find(s->slots, s->cap, id);
    if (s->slots[i])
        return 0;
    if ((s->slots[i] = strdup(id)) == NULL)
        return -1;
    s->n++;
    return 0;
}

int idset_has(const idset *s, const char *id)
{
    return s->cap && s->slots[find(s->slots, s->cap, id)] != NULL;
}

void idset_free(idset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    memset(s, 0, sizeof *s);
}
