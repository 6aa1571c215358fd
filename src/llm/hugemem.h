/* hugemem.h -- zeroed memory in 2 MiB pages where the kernel gives them, for what every token streams through (weights, KV rows); zeroed memory on a cache line, for what threads write side by side. */
#ifndef NATTER_HUGEMEM_H
#define NATTER_HUGEMEM_H

#include <stddef.h>
#include <stdint.h>

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

/*
 * N zeroed elements of SIZE bytes from a 64-byte boundary (a cache line),
 * for free(); NULL when N * SIZE overflows, the allocation fails, or N or
 * SIZE is 0.  For the buffers the matrix products write: their threads
 * split an output row in whole lines, so none writes a line another does
 * -- calloc's large blocks start 16 bytes into a page, and two threads
 * writing the lines they then shared made Qwen2.5-0.5B's F16 GEMM ~10%
 * slower (kbench, 4864 x 896, 128 tokens, 2 threads, Zen 5: 342-365
 * against 376-388 GFLOP/s).
 */
void *line_calloc(size_t n, size_t size);
/*
 * The memory this process may still take, in bytes: MemAvailable, or less
 * where a cgroup's memory limit (v2's memory.max, v1's limit_in_bytes; its
 * own and those above it) leaves less, as in a container with a limit --
 * its use counted without the file cache it would drop first.  0 when
 * /proc/meminfo says nothing.
 */
uint64_t mem_available(void);

/* BYTES rounded up to whole cache lines. */
static inline size_t
line_bytes(size_t bytes)
{
	return (bytes + 63) & ~(size_t)63;
}

#endif
