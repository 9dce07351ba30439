/* Intrusive doubly linked lists and container_of, as in the Linux kernel and libuv's queue.h:
 * objects embed their links, so membership costs no allocation. */
#ifndef BATCHD_LIST_H
#define BATCHD_LIST_H

#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

typedef struct list_node {
    struct list_node *prev, *next;
} list_node;

/* A list head is a node linked to itself when empty. */
static inline void list_init(list_node *head) { head->prev = head->next = head; }
static inline int list_empty(const list_node *head) { return head->next == head; }
/* A node that is in no list points at itself (list_remove leaves it so). */
static inline int list_linked(const list_node *n) { return n->next != NULL && n->next != n; }

static inline void list_insert_before(list_node *pos, list_node *n)
{
    n->prev = pos->prev;
    n->next = pos;
    pos->prev->next = n;
    pos->prev = n;
}

static inline void list_push_back(list_node *head, list_node *n) { list_insert_before(head, n); }
static inline void list_push_front(list_node *head, list_node *n) { list_insert_before(head->next, n); }

static inline void list_remove(list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define list_foreach_safe(pos, tmp, head) \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

#endif
