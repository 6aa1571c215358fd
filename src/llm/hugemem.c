/* hugemem.c -- zeroed memory in 2 MiB pages where the kernel gives them (an anonymous mapping, aligned, with MADV_HUGEPAGE), or on a cache line. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "llm/hugemem.h"

void *
huge_alloc(size_t bytes, size_t *len)
{
	const size_t body = (bytes ? bytes + HUGE_PAGE - 1 : HUGE_PAGE) / HUGE_PAGE * HUGE_PAGE, all = body + HUGE_PAGE;
	uint8_t *p = mmap(NULL, all, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *a;

	if (p == MAP_FAILED)
		return NULL;
	/* BODY from the first 2 MiB boundary of a mapping one page larger;
	 * the rest given back. */
	a = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (p + all > a + body)
		munmap(a + body, (size_t)(p + all - (a + body)));
#ifdef MADV_HUGEPAGE
	madvise(a, body, MADV_HUGEPAGE);
#endif
	*len = body;
	return a;
}

void
huge_free(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

void *
line_calloc(size_t n, size_t size)
{
	void *p = NULL;

	if (!n || !size || n > SIZE_MAX / size || posix_memalign(&p, 64, n * size) != 0)
		return NULL;
	memset(p, 0, n * size);
	return p;
}
