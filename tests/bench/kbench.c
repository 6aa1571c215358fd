/* kbench.c -- matrix-product kernels alone: the best of many short runs (robust on a busy machine). */
/*
 * usage: tests/bench/kbench TYPE D N NT [THREADS] [REPS]
 * Times mm_matmul of a random D x N matrix of TYPE with NT activation rows
 * (in 2 MiB pages, as a loaded model's) on the tier NATTER_CPU chooses; prints the best time, GFLOP/s and the
 * weight bytes per second.  KBENCH_BLAS=1 times the alternative instead:
 * the rows dequantized by the tier into panels of 2 MiB, multiplied by
 * single-threaded OpenBLAS sgemm (one thread).  KBENCH_PACKED=1 packs the
 * rows first, as a model's are at load (pack.c).  KBENCH_SHARE=1 also reads
 * the weights alone after each product (read_sum on the same threads) and
 * prints the products' rate as a share of that read's, over all the
 * repetitions (the share generation's bound measures; robust to the
 * memory's drift on a shared machine).  KBENCH_COPIES=C makes C copies of
 * the matrix and multiplies each in turn, so that every product reads its
 * weights from memory, as a token does its many small matrices; it also
 * prints the mean.  KBENCH_OFFSET=B puts the matrix B bytes (under
 * 4096) past a 2 MiB boundary, as a file's weights whose data starts
 * there would be (gguf.c now copies them onto a line).  Q2_K and Q3_K (no
 * quantizer here) are random bytes with sane scales.  A developer's tool, not part
 * of make check.
 *
 *        tests/bench/kbench attn R HD NK [REPS]
 * Times the tier's binary16 attention kernels (attn_ops qk_h, then pv_h)
 * for R query rows of one KV head against NK keys of HD dimensions, the
 * rows of a cache of 8 KV heads, in cache (a generated token's attention
 * at a short context): the best time of each, per key.
 *
 *        tests/bench/kbench attnt R HD NK [REPS]
 * Times the transposed tiles of a prompt's block (qk_t, softmax_t, pv_t)
 * for R query rows against NK keys of HD, in cache.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cblas.h>

#include "natter/quant.h"
#include "natter/sysbench.h"
#include "llm/attn.h"
#include "llm/hugemem.h"
#include "llm/matmul.h"
#include "llm/quant-impl.h"
#include "llm/pool.h"

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* KBENCH_SHARE: the weights read alone, split among the pool's threads
 * (the bound generation is measured against), in sysbench.h's two loops
 * by turns. */
struct rd_job {
	const uint8_t *w;
	size_t bytes, ahead;
	uint64_t sum[64];
};

static void
rd_worker(void *arg, int ith, int nth)
{
	struct rd_job *j = arg;
	size_t a = j->bytes * ith / nth / 256 * 256, b = j->bytes * (ith + 1) / nth / 256 * 256;
	j->sum[ith & 63] += q_kern()->read_sum(j->w + a, b - a, j->ahead);
}

/* kbench attn and attnt's arguments R HD NK [REPS] (REPS 2000 when
 * absent), then the CPU's tiers; 0, or 2 after saying what is wrong. */
static int
attn_args(int argc, char **argv, int *r, int *hd, int *nk, int *reps)
{
	char err[256];

	*r = argc > 2 ? atoi(argv[2]) : 0;
	*hd = argc > 3 ? atoi(argv[3]) : 0;
	*nk = argc > 4 ? atoi(argv[4]) : 0;
	*reps = argc > 5 ? atoi(argv[5]) : 2000;
	if (*r < 1 || *hd < 1 || *nk < 1 || *reps < 1) {
		fprintf(stderr, "usage: kbench %s R HD NK [REPS]\n", argv[1]);
		return 2;
	}
	if (q_cpu_init(err, sizeof(err)) < 0) {
		fprintf(stderr, "kbench: %s\n", err);
		return 2;
	}
	return 0;
}

static int
attn_bench(int argc, char **argv)
{
	int r, hd, nk, reps;

	if (attn_args(argc, argv, &r, &hd, &nk, &reps))
		return 2;
	const int ld = 8 * hd;
	const struct attn_ops *o = attn_ops_get();
	float *q = malloc((size_t)r * hd * sizeof(float)), *sc = malloc((size_t)r * nk * sizeof(float));
	float *out = calloc((size_t)r * hd, sizeof(float));
	qhalf *k = malloc((size_t)nk * ld * sizeof(qhalf)), *v = malloc((size_t)nk * ld * sizeof(qhalf));
	uint64_t s = 88172645463325252ull;
	if (!q || !sc || !out || !k || !v) {
		fprintf(stderr, "kbench: out of memory\n");
		return 1;
	}
	for (int i = 0; i < r * hd; i++) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		q[i] = (float)((int)(s % 2001) - 1000) / 1000.0f;
	}
	for (size_t i = 0; i < (size_t)nk * ld; i++) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		k[i] = q_f32_to_f16((float)((int)(s % 2001) - 1000) / 1000.0f);
		v[i] = q_f32_to_f16((float)((int)((s >> 20) % 2001) - 1000) / 1000.0f);
	}
	for (int i = 0; i < r * nk; i++)
		sc[i] = 1.0f / nk;
	double best_qk = 1e9, best_pv = 1e9;
	for (int rep = 0; rep < reps; rep++) {
		double t0 = now_s();
		o->qk_h(q, r, hd, k, ld, nk, sc, nk, NULL, 0);
		double t1 = now_s();
		o->pv_h(sc, nk, r, v, ld, nk, hd, out, hd, NULL, 0);
		double t2 = now_s();
		best_qk = t1 - t0 < best_qk ? t1 - t0 : best_qk;
		best_pv = t2 - t1 < best_pv ? t2 - t1 : best_pv;
		for (int i = 0; i < r * nk; i++)
			sc[i] = 1.0f / nk;
	}
	printf("attn %-8s r %d hd %d keys %d: qk_h %.2f ns/key, pv_h %.2f ns/key\n", o->name, r, hd, nk,
	    best_qk / nk * 1e9, best_pv / nk * 1e9);
	free(q);
	free(sc);
	free(out);
	free(k);
	free(v);
	return 0;
}

/* kbench attnt R HD NK [REPS]: the transposed tiles of a prompt's block
 * (qk_t, softmax_t, pv_t) for R query rows against NK keys of HD, in
 * cache: the best time of each, and the products' GFLOP/s. */
static int
attnt_bench(int argc, char **argv)
{
	int r, hd, nk, reps;

	if (attn_args(argc, argv, &r, &hd, &nk, &reps))
		return 2;
	const int ldr = (r + 16 + 15) / 16 * 16;
	const struct attn_ops *o = attn_ops_get();
	float *qt = calloc((size_t)hd * ldr, sizeof(float)), *st = calloc((size_t)nk * ldr, sizeof(float));
	float *k = malloc((size_t)nk * hd * sizeof(float)), *v = malloc((size_t)nk * hd * sizeof(float));
	float *out = calloc((size_t)r * hd, sizeof(float)), *ml = malloc(3 * (size_t)ldr * sizeof(float));
	uint64_t s = 88172645463325252ull;
	if (!qt || !st || !k || !v || !out || !ml) {
		fprintf(stderr, "kbench: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < (size_t)hd * ldr; i++) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		qt[i] = (float)((int)(s % 2001) - 1000) / 8000.0f;
	}
	for (size_t i = 0; i < (size_t)nk * hd; i++) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		k[i] = (float)((int)(s % 2001) - 1000) / 1000.0f;
		v[i] = (float)((int)((s >> 20) % 2001) - 1000) / 1000.0f;
	}
	double best_qk = 1e9, best_sm = 1e9, best_pv = 1e9;
	for (int rep = 0; rep < reps; rep++) {
		for (int i = 0; i < ldr; i++) {
			ml[i] = 0.5f;
			ml[ldr + i] = 1.0f;
		}
		double t0 = now_s();
		o->qk_t(qt, ldr, r, hd, k, hd, nk, st, ldr);
		double t1 = now_s();
		o->softmax_t(st, ldr, nk, r, ml, ml + ldr, ml + 2 * ldr);
		double t2 = now_s();
		o->pv_t(st, ldr, r, v, hd, nk, hd, ml + 2 * ldr, out, hd);
		double t3 = now_s();
		best_qk = t1 - t0 < best_qk ? t1 - t0 : best_qk;
		best_sm = t2 - t1 < best_sm ? t2 - t1 : best_sm;
		best_pv = t3 - t2 < best_pv ? t3 - t2 : best_pv;
	}
	const double fl = 2.0 * r * hd * nk;
	printf("attnt %-8s r %d hd %d keys %d: qk_t %.2f us (%.1f GFLOP/s), softmax_t %.2f us, pv_t %.2f us "
	    "(%.1f GFLOP/s)\n", o->name, r, hd, nk, best_qk * 1e6, fl / best_qk * 1e-9, best_sm * 1e6, best_pv * 1e6,
	    fl / best_pv * 1e-9);
	free(qt);
	free(st);
	free(k);
	free(v);
	free(out);
	free(ml);
	return 0;
}

int
main(int argc, char **argv)
{
	enum ggml_type type = GGML_TYPE_COUNT;
	int d, n, nt, threads = 1, reps = 50;
	char err[256];

	if (argc > 1 && strcmp(argv[1], "attn") == 0)
		return attn_bench(argc, argv);
	if (argc > 1 && strcmp(argv[1], "attnt") == 0)
		return attnt_bench(argc, argv);
	if (argc < 5) {
		fprintf(stderr, "usage: kbench TYPE D N NT [THREADS] [REPS]\n       kbench attn R HD NK [REPS]\n       kbench attnt R HD NK [REPS]\n");
		return 2;
	}
	for (int t = 0; t < GGML_TYPE_COUNT; t++)
		if (ggml_type_info_get(t)->name && strcasecmp(ggml_type_info_get(t)->name, argv[1]) == 0)
			type = t;
	d = atoi(argv[2]);
	n = atoi(argv[3]);
	nt = atoi(argv[4]);
	if (argc > 5)
		threads = atoi(argv[5]);
	if (argc > 6)
		reps = atoi(argv[6]);
	/* Types natter has no quantizer for (Q2_K, Q3_K): random bytes, with
	 * their f16 scales (at these offsets of a block) set to 1/64. */
	static const struct { enum ggml_type t; int off[2]; } raw[] = {
		{ GGML_TYPE_Q2_K, { 80, 82 } }, { GGML_TYPE_Q3_K, { 108, -1 } },
	};
	int ri = -1;
	for (size_t i = 0; type != GGML_TYPE_COUNT && i < sizeof(raw) / sizeof(raw[0]); i++)
		if (raw[i].t == type)
			ri = (int)i;
	if (type == GGML_TYPE_COUNT || !q_traits_get(type)->supported || (!q_traits_get(type)->from_float && ri < 0) ||
	    d < 1 || n < 1 || nt < 1) {
		fprintf(stderr, "kbench: bad arguments\n");
		return 2;
	}
	if (q_cpu_init(err, sizeof(err)) < 0) {
		fprintf(stderr, "kbench: %s\n", err);
		return 2;
	}
	size_t rb = q_row_size(type, n);
	/* In 2 MiB pages where the kernel has them, as a loaded model's weights are. */
	size_t w_len;
	/* KBENCH_OFFSET=B: the matrix B bytes past a 2 MiB boundary (a file's
	 * weights where its tensor data starts, as mapped). */
	const char *off_env = getenv("KBENCH_OFFSET");
	const size_t w_off = off_env ? (size_t)strtoul(off_env, NULL, 10) % 4096 : 0;
	uint8_t *w_map = huge_alloc(rb * d + w_off, &w_len), *w = w_map ? w_map + w_off : NULL;
	if (!w) {
		fprintf(stderr, "kbench: out of memory\n");
		return 1;
	}
	float *row = malloc(n * sizeof(float)), *x = malloc((size_t)nt * n * sizeof(float));
	float *out = line_calloc((size_t)nt * d, sizeof(float));   /* as a session's buffers */
	uint64_t s = 88172645463325252ull;
	for (int r = 0; r < d; r++) {
		for (int i = 0; i < n; i++) {
			s ^= s << 13; s ^= s >> 7; s ^= s << 17;
			row[i] = (float)((int)(s % 2001) - 1000) / 1000.0f;
		}
		if (ri < 0) {
			q_traits_get(type)->from_float(row, w + rb * r, n);
			continue;
		}
		const size_t bs = ggml_type_info_get(type)->type_size;
		for (size_t i = 0; i < rb; i++) {
			s ^= s << 13; s ^= s >> 7; s ^= s << 17;
			w[rb * r + i] = (uint8_t)s;
		}
		for (size_t b = 0; b < rb / bs; b++)
			for (int k = 0; k < 2 && raw[ri].off[k] >= 0; k++) {
				uint8_t *h = w + rb * r + b * bs + raw[ri].off[k];
				h[0] = 0x00;
				h[1] = 0x24;   /* binary16 1/64 */
			}
	}
	for (size_t i = 0; i < (size_t)nt * n; i++) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		x[i] = (float)((int)(s % 2001) - 1000) / 1000.0f;
	}
	struct pool *p = pool_new(threads);
	struct mm_scratch sc;
	struct ltensor lt = { w, type, n, d, 1, rb, rb * d, 0 };
	const char *packed = getenv("KBENCH_PACKED");
	if (packed && *packed == '1') {
		const struct q_kernels *k = q_kern();
		uint8_t *tmp = malloc(rb * k->pack_rows);
		if (!k->t[type].gemv_packed || !tmp) {
			fprintf(stderr, "kbench: the %s tier does not pack %s\n", k->name, ggml_type_info_get(type)->name);
			return 2;
		}
		q_pack_matrix(type, w, d, rb, k->pack_rows, tmp);
		free(tmp);
		lt.packed = k->pack_rows;
	}
	/* KBENCH_COPIES=C: C copies of the matrix, a product on each in turn,
	 * so that each reads its weights from memory, as a token's many
	 * small matrices do. */
	const char *copies_env = getenv("KBENCH_COPIES");
	const int copies = copies_env && atoi(copies_env) > 1 ? atoi(copies_env) : 1;
	size_t cp_len = 0;
	/* Each copy on the original's alignment (64 bytes): a packed column
	 * keeps its header where its address put it (q_pack_header_after). */
	const size_t cstride = line_bytes(rb * d);
	uint8_t *cp = copies > 1 ? huge_alloc(cstride * copies, &cp_len) : NULL;
	for (int c = 0; cp && c < copies; c++)
		memcpy(cp + cstride * c, w, rb * d);
	if (!p || (copies > 1 && !cp) || mm_scratch_init(&sc, nt, n, pool_size(p)) < 0) {
		fprintf(stderr, "kbench: out of memory\n");
		return 1;
	}
	double best = 1e9, t_mm = 0, t_rd[2] = { 0, 0 }, t_all = 0;
	unsigned long n_rd[2] = { 0, 0 };
	const char *blas = getenv("KBENCH_BLAS"), *share = getenv("KBENCH_SHARE");
	struct rd_job rj = { w, rb * d, 0, { 0 } };
	int per = (int)((2u << 20) / (n * sizeof(float)));
	float *panel = malloc((size_t)per * n * sizeof(float));
	openblas_set_num_threads(1);
	/* A third of a second of products first, untimed: a new process's
	 * worker starts on its parent's CPU, and Linux may take a while to
	 * move it.  Zen 5, 2 threads, F16 2688 x 896 by 128 tokens, 20 reps
	 * (0.1 s in all): 3 processes of 4, then 2 of 6, at 199-223
	 * GFLOP/s (one thread's speed), the others at 415-437; with 300
	 * reps, 5 of 5 at 440-442; with this, 6 of 6 at 419-438. */
	if (pool_size(p) > 1 && !(blas && *blas == '1'))
		for (double w0 = now_s(); now_s() - w0 < 0.3;) {
			lt.data = w;
			mm_matmul(p, &sc, out, d, x, n, &lt, nt);
		}
	for (int r = 0; r < reps; r++) {
		/* This repetition's matrix (a copy in turn, with KBENCH_COPIES). */
		const uint8_t *wr = cp ? cp + cstride * (r % copies) : w;
		double t0 = now_s();
		if (blas && *blas == '1') {
			q_to_float_fn tf = q_traits_get(type)->to_float_fast;
			for (int r0 = 0; r0 < d; r0 += per) {
				int rows = d - r0 < per ? d - r0 : per;
				for (int k = 0; k < rows; k++)
					tf(wr + rb * (r0 + k), panel + (size_t)k * n, n);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, rows, n, 1.0f, x, n, panel, n, 0.0f,
				    out + r0, d);
			}
		} else {
			lt.data = wr;
			mm_matmul(p, &sc, out, d, x, n, &lt, nt);
		}
		double dt = now_s() - t0;
		t_all += dt;
		if (dt < best)
			best = dt;
		if (share && *share == '1') {
			/* Alternately, so that both meet the same memory. */
			double t1 = now_s();
			if (cp)   /* a copy neither just multiplied nor read: from memory too */
				rj.w = cp + cstride * ((r + copies / 2) % copies);
			rj.ahead = r % 2 ? SYSBENCH_AHEAD : 0;
			pool_run(p, rd_worker, &rj);
			t_rd[r % 2] += now_s() - t1;
			n_rd[r % 2]++;
			t_mm += dt;
		}
	}
	free(panel);
	printf("%s%s%-6s %-10s d %5d n %5d nt %4d t %d: %8.3f ms %7.1f GFLOP/s %6.1f GB/s weights\n",
	    blas && *blas == '1' ? "BLAS " : "", lt.packed ? "packed " : "", ggml_type_info_get(type)->name, q_cpu_features(), d, n, nt, pool_size(p), best * 1e3,
	    2.0 * d * n * nt / best / 1e9, rb * d / best / 1e9);
	if (copies > 1) {
		printf("  from memory (%d copies): mean %.3f ms, %.1f GB/s weights\n", copies, t_all / reps * 1e3,
		    rb * d * (double)reps / t_all / 1e9);
		/* Copies of a few caches' size in all leave some of each
		 * product's weights there from the round before (seen on Zen 5
		 * under 100 MiB; its L3 as this VM reports it, sysconf, is the
		 * whole socket's). */
		const double all = (double)cstride * copies;
		if (all < 256.0 * 1048576)
			printf("  (the copies are %.0f MiB in all, under 256: some of each product's weights may come "
			    "from the caches; more copies for memory alone)\n", all / 1048576);
	}
	if (t_mm > 0) {
		double rd[2], best_rd = sysbench_faster_read(t_rd, n_rd, (double)rb * d, rd);
		double mm = rb * d * (double)reps / t_mm / 1e9;
		printf("  weights read alone at %.1f GB/s between the products (%.1f plain, %.1f read ahead); the products "
		    "at %.1f GB/s: %.0f%% of it\n", best_rd, rd[0], rd[1], mm, 100 * mm / best_rd);
	}
	if (pool_jobs_alone(p))
		printf("  (%lu of %lu jobs ran on one thread: the load average said the CPUs were busy)\n",
		    pool_jobs_alone(p), pool_jobs(p));
	mm_scratch_free(&sc);
	pool_free(p);
	huge_free(w_map, w_len);
	if (cp)
		huge_free(cp, cp_len);
	free(row);
	free(x);
	free(out);
	return 0;
}
