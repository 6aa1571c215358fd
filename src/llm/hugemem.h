/* hugemem.h -- zeroed memory in 2 MiB pages where the kernel gives them, for what every token streams through (weights, KV rows). */
#ifndef NATTER_HUGEMEM_H
#define NATTER_HUGEMEM_H

#include <stddef.h>

#define HUGE_PAGE ((size_t)2 << 20)

/*
 * BYTES of zeroed, readable and writable memory, 2 MiB-aligned, asked for
 * in 2 MiB pages (MADV_HUGEPAGE: a hint; else 4 KiB pages), untouched
 * until written.  *LEN gets the bytes mapped (BYTES rounded up to 2 MiB),
 * which huge_free wants.  NULL when the mapping fails.  Any thread.
 */
void *huge_alloc(size_t bytes, size_t *len);
/* Unmaps what huge_alloc gave (LEN as it said); P NULL is fine. */
void huge_free(void *p, size_t len);

#endif
