/* test.h -- a few macros shared by the test programs (exit 0 pass, 1 fail, 77 skip). */
#ifndef NATTER_TEST_H
#define NATTER_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int t_pass, t_fail, t_skip;

#define CHECK(cond, ...) do { \
	if (cond) { \
		t_pass++; \
	} else { \
		t_fail++; \
		fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
	} \
} while (0)

#define SKIP(...) do { t_skip++; printf("SKIP: "); printf(__VA_ARGS__); putchar('\n'); } while (0)

/* The shared fixtures folder, or NULL (tests then report SKIP). */
static inline const char *
test_fixtures(void)
{
	static char buf[2048];
	struct stat st;
	const char *e = getenv("NATTER_FIXTURES");

	snprintf(buf, sizeof(buf), "%s", e && *e ? e : "../shared/fixtures");
	if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
		return NULL;
	return buf;
}

static inline void *
test_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n + 1);
	if (buf && fread(buf, 1, n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf) {
		buf[n] = 0;
		*len = (size_t)n;
	}
	return buf;
}

static inline int
test_done(const char *name)
{
	printf("%s: %d checks passed, %d failed, %d skipped\n", name, t_pass, t_fail, t_skip);
	if (t_fail)
		return 1;
	if (t_pass == 0 && t_skip)
		return 77;
	return 0;
}

#endif
