/* sysbench.c -- measuring the roofline that natter's kernels are judged against. */
#include "config.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "natter/sysbench.h"
#include "llm/pool.h"

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct bw_job {
	const uint64_t *buf;
	size_t n;
	uint64_t sums[64];
};

static void
bw_worker(void *arg, int ith, int nth)
{
	struct bw_job *j = arg;
	size_t a = j->n * ith / nth, b = j->n * (ith + 1) / nth;
	uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;

	a &= ~(size_t)7;
	b &= ~(size_t)7;
	for (size_t i = a; i < b; i += 8) {
		s0 += j->buf[i]; s1 += j->buf[i + 1]; s2 += j->buf[i + 2]; s3 += j->buf[i + 3];
		s4 += j->buf[i + 4]; s5 += j->buf[i + 5]; s6 += j->buf[i + 6]; s7 += j->buf[i + 7];
	}
	j->sums[ith & 63] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

double
sysbench_read_bandwidth(int n_threads)
{
	const size_t bytes = (size_t)512 << 20;
	struct bw_job job;
	struct pool *p;
	uint64_t *buf = malloc(bytes);
	double best = 0;

	if (!buf)
		return -1;
	p = pool_new(n_threads);
	if (!p) {
		free(buf);
		return -1;
	}
	memset(buf, 1, bytes);
	memset(&job, 0, sizeof(job));
	job.buf = buf;
	job.n = bytes / 8;
	for (int r = 0; r < 4; r++) {
		double t0 = now_s();
		pool_run(p, bw_worker, &job);
		double dt = now_s() - t0;
		if (r > 0 && bytes / dt / 1e9 > best)   /* the first pass warms the TLB */
			best = bytes / dt / 1e9;
	}
	pool_free(p);
	free(buf);
	return job.sums[0] == 0 ? -1 : best;
}

double
sysbench_sgemm_gflops(int n)
{
	float *a = malloc((size_t)n * n * sizeof(float));
	float *b = malloc((size_t)n * n * sizeof(float));
	float *c = malloc((size_t)n * n * sizeof(float));
	double best = -1;

	if (a && b && c) {
		for (size_t i = 0; i < (size_t)n * n; i++) {
			a[i] = (float)(i % 7) * 0.1f;
			b[i] = (float)(i % 5) * 0.1f;
		}
		/* natter runs OpenBLAS single-threaded inside its own workers; the
		 * machine's figure is for all cores. */
		openblas_set_num_threads(sysbench_physical_cores());
		for (int r = 0; r < 4; r++) {
			double t0 = now_s();
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
			double dt = now_s() - t0;
			double gf = 2.0 * n * n * (double)n / dt / 1e9;
			if (r > 0 && gf > best)
				best = gf;
		}
		openblas_set_num_threads(1);
	}
	free(a);
	free(b);
	free(c);
	return best;
}

int
sysbench_physical_cores(void)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	int ids[1024], n = 0;

	for (int cpu = 0; cpu < 1024; cpu++) {
		char path[128];
		FILE *f;
		int core = -1, pkg = 0;

		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
		f = fopen(path, "r");
		if (!f)
			break;
		if (fscanf(f, "%d", &core) != 1)
			core = -1;
		fclose(f);
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
		f = fopen(path, "r");
		if (f) {
			if (fscanf(f, "%d", &pkg) != 1)
				pkg = 0;
			fclose(f);
		}
		int id = pkg * 4096 + core, seen = 0;
		for (int i = 0; i < n; i++)
			seen |= ids[i] == id;
		if (!seen && core >= 0)
			ids[n++] = id;
	}
	if (n == 0)
		return online < 1 ? 1 : (int)online;
	return n;
}
