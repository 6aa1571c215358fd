/* hugemem.c -- zeroed memory in 2 MiB pages where the kernel gives them (an anonymous mapping, aligned, with MADV_HUGEPAGE), or on a cache line. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
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

/* The number that begins file PATH (or follows "KEY " on one of its lines,
 * KEY not NULL) into *V: 0, or -1 (no file, no number: cgroup v2's "max"). */
static int
read_u64(const char *path, const char *key, uint64_t *v)
{
	FILE *fp = fopen(path, "r");
	char line[256];
	unsigned long long x;
	int rc = -1;

	if (!fp)
		return -1;
	if (!key) {
		rc = fscanf(fp, "%llu", &x) == 1 ? 0 : -1;
	} else {
		const size_t kl = strlen(key);
		while (rc < 0 && fgets(line, sizeof(line), fp))
			if (!strncmp(line, key, kl) && line[kl] == ' ' && sscanf(line + kl, "%llu", &x) == 1)
				rc = 0;
	}
	fclose(fp);
	if (rc == 0)
		*v = x;
	return rc;
}

/* The files of a cgroup's memory: its limit, its use, and what of that use
 * is file cache the kernel would drop first (as MemAvailable counts it). */
static const struct cg_files {
	const char *controller;   /* in /proc/self/cgroup: "" (v2) or "memory" (v1) */
	const char *dir, *limit, *usage, *stat, *inactive;
} cg_files[] = {
	{ "", "/sys/fs/cgroup", "memory.max", "memory.current", "memory.stat", "inactive_file" },
	{ "memory", "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat",
	  "total_inactive_file" },
};

/* What the cgroup at PATH (F's hierarchy) and those above it leave of their
 * limits, the least; UINT64_MAX when none has one. */
static uint64_t
cg_room(const struct cg_files *f, const char *path)
{
	uint64_t room = UINT64_MAX;
	int n = (int)strlen(path);

	for (;;) {
		char p[4096];
		uint64_t lim, use, cache = 0;
		snprintf(p, sizeof(p), "%s%.*s/%s", f->dir, n, path, f->limit);
		/* v1 says "no limit" with a number near 2^63 */
		if (read_u64(p, NULL, &lim) == 0 && lim < (UINT64_C(1) << 60)) {
			snprintf(p, sizeof(p), "%s%.*s/%s", f->dir, n, path, f->usage);
			if (read_u64(p, NULL, &use) == 0) {
				snprintf(p, sizeof(p), "%s%.*s/%s", f->dir, n, path, f->stat);
				if (read_u64(p, f->inactive, &cache) < 0 || cache > use)
					cache = 0;
				use -= cache;
				const uint64_t left = lim > use ? lim - use : 0;
				if (left < room)
					room = left;
			}
		}
		if (n <= 1)
			return room;
		while (n > 0 && path[n - 1] != '/')
			n--;
		if (n > 0)
			n--;   /* the parent: "/a/b" -> "/a" -> "" (the hierarchy's root) */
	}
}

/* Whether the comma-separated controllers CTL name WANT ("": none, v2). */
static int
cg_names(const char *ctl, const char *want)
{
	const size_t n = strlen(want);

	if (!n)
		return !*ctl;
	for (const char *t = ctl; (t = strstr(t, want)); t += n)
		if ((t == ctl || t[-1] == ',') && (t[n] == ',' || !t[n]))
			return 1;
	return 0;
}

uint64_t
mem_available(void)
{
	FILE *fp = fopen("/proc/meminfo", "r");
	char line[4096];
	unsigned long long kb;
	uint64_t avail = 0;

	if (fp) {
		while (fgets(line, sizeof(line), fp))
			if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
				avail = (uint64_t)kb * 1024;
				break;
			}
		fclose(fp);
	}
	if (!avail || !(fp = fopen("/proc/self/cgroup", "r")))
		return avail;
	/* "ID:CONTROLLERS:PATH" lines: v2's has no controllers, v1's memory
	 * hierarchy names "memory" among them. */
	while (fgets(line, sizeof(line), fp)) {
		char *c = strchr(line, ':'), *path, *nl;
		if (!c || !(path = strchr(c + 1, ':')))
			continue;
		*path++ = 0;
		if ((nl = strchr(path, '\n')))
			*nl = 0;
		c++;
		for (size_t i = 0; i < sizeof(cg_files) / sizeof(cg_files[0]); i++) {
			if (cg_names(c, cg_files[i].controller)) {
				const uint64_t room = cg_room(&cg_files[i], path);
				if (room < avail)
					avail = room;
			}
		}
	}
	fclose(fp);
	return avail;
}
