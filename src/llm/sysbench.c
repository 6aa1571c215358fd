/* sysbench.c -- measuring the roofline that natter's kernels are judged against, with the chosen tier's instructions. */
#include "config.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include "natter/quant.h"
#include "natter/sysbench.h"
#include "llm/hugemem.h"
#include "llm/model.h"
#include "llm/pool.h"
#include "llm/quant-impl.h"

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct bw_job {
	const uint8_t *buf;
	size_t n;               /* bytes */
	size_t ahead;           /* the read loop's: 0 or SYSBENCH_AHEAD */
	uint64_t (*read_sum)(const void *, size_t, size_t);
	uint64_t sums[64];
};

static void
bw_worker(void *arg, int ith, int nth)
{
	struct bw_job *j = arg;
	size_t a = j->n * ith / nth, b = j->n * (ith + 1) / nth;

	a &= ~(size_t)255;
	b &= ~(size_t)255;
	j->sums[ith & 63] = j->read_sum(j->buf + a, b - a, j->ahead);
}

double
sysbench_read_bandwidth(int n_threads)
{
	const size_t bytes = (size_t)512 << 20;
	struct bw_job job;
	struct pool *p;
	/* In 2 MiB pages where the kernel has them, as the weights and the KV
	 * cache are (gguf.c, kv.c): the bound is what the machine can do. */
	size_t len;
	uint8_t *buf = huge_alloc(bytes, &len);
	double best = 0;

	if (!buf)
		return -1;
	p = pool_new(n_threads);
	if (!p) {
		huge_free(buf, len);
		return -1;
	}
	memset(buf, 1, bytes);
	memset(&job, 0, sizeof(job));
	job.buf = buf;
	job.n = bytes;
	job.read_sum = q_kern()->read_sum;
	/* The first pass warms the TLB; then each loop three times, by turns. */
	for (int r = 0; r < 7; r++) {
		job.ahead = r % 2 ? 0 : SYSBENCH_AHEAD;
		double t0 = now_s();
		pool_run(p, bw_worker, &job);
		double dt = now_s() - t0;
		if (r > 0 && bytes / dt / 1e9 > best)
			best = bytes / dt / 1e9;
	}
	pool_free(p);
	huge_free(buf, len);
	return job.sums[0] == 0 ? -1 : best;
}

double
sysbench_faster_read(const double secs[2], const unsigned long n[2], double bytes, double gbps[2])
{
	double best = 0;

	for (int l = 0; l < 2; l++) {
		gbps[l] = secs[l] > 0 ? n[l] * bytes / secs[l] / 1e9 : 0;
		if (gbps[l] > best)
			best = gbps[l];
	}
	return best;
}

const struct gguf_tensor *
sysbench_untied_embd(const struct gguf_file *f)
{
	return gguf_find_tensor(f, "output.weight") ? gguf_find_tensor(f, "token_embd.weight") : NULL;
}

enum sysbench_read
sysbench_token_read(const struct gguf_tensor *t, const struct gguf_tensor *untied_embd)
{
	if (t->ne[1] <= 1 && t->ne[2] <= 1)
		return SYSBENCH_READ_NONE;
	return t == untied_embd ? SYSBENCH_READ_ROW : SYSBENCH_READ_ALL;
}

/*
 * The weights one generated token reads, read again on the context's own
 * threads: each matrix it reads whole, once (sysbench_token_read; the
 * embedding table's one row is left out).  The spans are taken as they
 * lie in memory, so the read meets the same pages (2 MiB or mapped) as the
 * kernels do.
 */
struct wread_job {
	const struct gguf_file *f;
	const struct gguf_tensor *embd;   /* sysbench_untied_embd */
	uint64_t total;                   /* bytes over every span */
	size_t ahead;
	uint64_t (*read_sum)(const void *, size_t, size_t);
	uint64_t sums[64];
};

static int
wread_takes(const struct wread_job *j, const struct gguf_tensor *t)
{
	return sysbench_token_read(t, j->embd) == SYSBENCH_READ_ALL;
}

static void
wread_worker(void *arg, int ith, int nth)
{
	struct wread_job *j = arg;
	uint64_t a = j->total * ith / nth, b = j->total * (ith + 1) / nth, at = 0, sum = 0;

	/* This thread's share of the spans laid end to end. */
	for (uint64_t i = 0; i < j->f->n_tensors && at < b; i++) {
		const struct gguf_tensor *t = &j->f->tensors[i];
		if (!wread_takes(j, t))
			continue;
		uint64_t lo = a > at ? a - at : 0, hi = b - at < t->nbytes ? b - at : t->nbytes;
		if (lo < hi) {
			lo &= ~(uint64_t)63;     /* whole lines; the kernels read 64 bytes at a time */
			hi &= ~(uint64_t)63;
			if (lo < hi)
				sum += j->read_sum((const uint8_t *)t->data + lo, hi - lo, j->ahead);
		}
		at += t->nbytes;
	}
	j->sums[ith & 63] = sum;
}

double
sysbench_read_weights(struct llm_ctx *ctx, uint64_t *bytes, size_t ahead)
{
	const struct gguf_file *f = llm_model_gguf(ctx->m);
	struct wread_job job;
	double t0;

	memset(&job, 0, sizeof(job));
	job.f = f;
	job.ahead = ahead;
	job.read_sum = q_kern()->read_sum;
	job.embd = sysbench_untied_embd(f);
	for (uint64_t i = 0; i < f->n_tensors; i++)
		if (wread_takes(&job, &f->tensors[i]))
			job.total += f->tensors[i].nbytes;
	if (bytes)
		*bytes = job.total;
	t0 = now_s();
	pool_run(ctx->pool, wread_worker, &job);
	return now_s() - t0;
}

/* Runs FN on N threads at once (plain threads: each must run concurrently
 * for the sum of the rates to mean anything); the sum of their rates. */
struct peak_arg {
	double (*fn)(double);
	double rate;
};

static void *
peak_thread(void *arg)
{
	struct peak_arg *a = arg;
	a->rate = a->fn(0.3);
	return NULL;
}

static double
peak_run(double (*fn)(double), int n_threads)
{
	double best = -1;

	if (n_threads < 1)
		n_threads = 1;
	if (n_threads > 256)
		n_threads = 256;
	for (int r = 0; r < 2; r++) {
		struct peak_arg args[256];
		pthread_t th[256];
		int started = 1;
		double sum = 0;
		for (int i = 0; i < n_threads; i++)
			args[i].fn = fn;
		for (int i = 1; i < n_threads; i++) {
			if (pthread_create(&th[i], NULL, peak_thread, &args[i]) != 0)
				break;
			started++;
		}
		peak_thread(&args[0]);
		sum = args[0].rate;
		for (int i = 1; i < started; i++) {
			pthread_join(th[i], NULL);
			sum += args[i].rate;
		}
		if (sum > best)
			best = sum;
	}
	return best;
}

double
sysbench_fma_gflops(int n_threads)
{
	return peak_run(q_kern()->peak_fma, n_threads);
}

double
sysbench_int8_gops(int n_threads)
{
	return peak_run(q_kern()->peak_i8, n_threads);
}

double
sysbench_bf16_gflops(int n_threads)
{
	return q_kern()->peak_bf16 ? peak_run(q_kern()->peak_bf16, n_threads) : 0;
}

int
sysbench_threads_clamp(int n, char *notice, size_t len)
{
	int cpus = pool_cpus_available();
	if (n > cpus) {
		if (notice && len)
			snprintf(notice, len, "%d threads requested, but this process may run on %d CPU%s: using %d", n,
			    cpus, cpus == 1 ? "" : "s", cpus);
		return cpus;
	}
	if (notice && len)
		notice[0] = 0;
	return n < 1 ? 1 : n;
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
