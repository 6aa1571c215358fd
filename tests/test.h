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

/*
 * Skips.  A test announces a skip with a line that starts "SKIP:", and may
 * skip for two reasons only:
 *
 *   SKIP(fmt, ...)       anything the developer's machine may not have (the
 *                        shared fixtures, a tool).  Under CI (the variable
 *                        CI is "true" or "1") this is a FAILURE, printed as
 *                        "FAIL (CI): ..." and counted in t_fail.
 *   SKIP_CPU_TIER(name)  the CPU lacks an instruction-set tier (avx512,
 *                        avx512vnni ...).  Prints exactly
 *                            SKIP: CPU tier NAME not available
 *                        (TEST_SKIP_CPU_TIER_RE matches it); the one skip
 *                        CI accepts, since no run can make a CPU grow one.
 *
 * tests/ci-gate.sh (make check's log compiler) and .ci/run hold shell tests
 * and anything else to the same rule: under CI, a "SKIP:" line of any other
 * form, or exit status 77 without a CPU-tier line, fails the test.
 */
#define TEST_SKIP_CPU_TIER_RE "^SKIP: CPU tier [A-Za-z0-9_.+-]+ not available$"

static inline int
test_ci(void)
{
	const char *e = getenv("CI");
	return e && (!strcmp(e, "true") || !strcmp(e, "1"));
}

#define SKIP(...) do { \
	if (test_ci()) { \
		t_fail++; \
		fprintf(stderr, "FAIL (CI): skipped: "); \
		fprintf(stderr, __VA_ARGS__); \
		fprintf(stderr, " -- under CI only a missing CPU tier may skip\n"); \
	} else { \
		t_skip++; \
		printf("SKIP: "); \
		printf(__VA_ARGS__); \
		putchar('\n'); \
	} \
} while (0)

#define SKIP_CPU_TIER(name) do { t_skip++; printf("SKIP: CPU tier %s not available\n", (name)); } while (0)

/* The shared fixtures folder ($NATTER_FIXTURES, else ../shared/fixtures),
 * or NULL: tests then SKIP outside CI; under CI the missing folder is
 * reported, by path, as a failure here. */
static inline const char *
test_fixtures(void)
{
	static char buf[2048];
	struct stat st;
	const char *e = getenv("NATTER_FIXTURES");

	snprintf(buf, sizeof(buf), "%s", e && *e ? e : "../shared/fixtures");
	if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
		if (test_ci()) {
			t_fail++;
			fprintf(stderr, "FAIL (CI): the shared fixtures are not at %s (CI needs them: put them at "
			    "../shared/fixtures beside the source tree or set NATTER_FIXTURES)\n", buf);
		}
		return NULL;
	}
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
