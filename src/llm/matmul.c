/* matmul.c -- batched matrix products: activations converted once, weight rows split into tasks for the pool. */
#include "config.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "natter/quant.h"
#include "llm/hugemem.h"
#include "llm/matmul.h"
#include "llm/pool.h"
#include "llm/quant-impl.h"

/* Bytes of the largest activation row any path may use for N inputs. */
static size_t
act_row_max(size_t n)
{
	size_t m = n * sizeof(float), v;
	v = Q8P_ROW_BYTES(n);
	if (v > m) m = v;
	v = q_row_size(GGML_TYPE_Q8_K, (int64_t)((n + QK_K - 1) / QK_K * QK_K));
	if (v > m) m = v;
	v = q_row_size(GGML_TYPE_Q8_1, (int64_t)((n + 31) / 32 * 32));
	if (v > m) m = v;
	return line_bytes(m);
}

/* Each thread's panel of dequantized weights for sgemm, at least 16 rows
 * of S->max_in (the scalar tier; float weights where OpenBLAS measured
 * faster).  -1: out of memory (mm_scratch_free frees what was had). */
static int
panels_alloc(struct mm_scratch *s, int n_threads)
{
	size_t bytes = MM_PANEL_BYTES;
	if (bytes < s->max_in * 16 * sizeof(float))
		bytes = s->max_in * 16 * sizeof(float);
	s->panel = calloc(n_threads, sizeof(*s->panel));
	if (!s->panel)
		return -1;
	s->n_panels = n_threads;
	s->panel_bytes = bytes;
	for (int i = 0; i < n_threads; i++)
		if (!(s->panel[i] = malloc(bytes)))
			return -1;
	return 0;
}

int
mm_scratch_init(struct mm_scratch *s, int n_batch, size_t max_in, int n_threads)
{
	static int blas_single;
	const struct q_kernels *k;

	memset(s, 0, sizeof(*s));
	/* Our threads call sgemm (the batched attention; the scalar tier's
	 * products) each on its own part: OpenBLAS must not start threads of
	 * its own on top of ours. */
	if (!blas_single) {
		openblas_set_num_threads(1);
		blas_single = 1;
	}
	q_cpu_init(NULL, 0);
	k = q_kern();
	if (n_batch < 1)
		n_batch = 1;
	s->n_batch = n_batch;
	s->max_in = max_in;
	s->cap = (size_t)n_batch * act_row_max(max_in) + 64;
	s->xq = aligned_alloc(64, line_bytes(s->cap));
	s->trace = calloc(MM_TRACE_MAX, sizeof(*s->trace));
	if (!s->xq || !s->trace)
		return -1;
	if (k->gemm_scratch) {
		size_t bytes = line_bytes(k->gemm_scratch((int)max_in));
		s->gemm = calloc(n_threads, sizeof(*s->gemm));
		if (!s->gemm)
			return -1;
		s->n_gemm = n_threads;
		for (int i = 0; i < n_threads; i++) {
			s->gemm[i] = aligned_alloc(64, bytes);
			if (!s->gemm[i])
				return -1;
		}
	}
	/* The scalar tier's large batches, and float weights where OpenBLAS
	 * measures faster (pages never written cost no memory). */
	if (n_batch >= MM_BLAS_MIN_BATCH)
		return panels_alloc(s, n_threads);
	return 0;
}

/* Products of the two rows per token are summed in chunks of tokens that
 * fit this many floats (or one token, for outputs larger than that). */
#define MM_EXACT_OUT_FLOATS (1u << 21)

int
mm_scratch_exact(struct mm_scratch *s, int n_threads)
{
	s->exact = 1;
	s->ex = aligned_alloc(64, 2 * (size_t)s->n_batch * Q8P_ROW_BYTES(s->max_in));
	s->eo_floats = MM_EXACT_OUT_FLOATS;
	s->eo = line_calloc(s->eo_floats, sizeof(float));
	s->er = calloc(n_threads, sizeof(*s->er));
	if (!s->ex || !s->eo || !s->er)
		return -1;
	s->n_er = n_threads;
	for (int i = 0; i < n_threads; i++)
		if (!(s->er[i] = malloc(s->max_in * sizeof(float))))
			return -1;
	/* The scalar tier's exact products all go through sgemm. */
	if (!q_kern()->gemm_scratch && !s->panel)
		return panels_alloc(s, n_threads);
	return 0;
}

void
mm_scratch_free(struct mm_scratch *s)
{
	free(s->ex);
	free(s->eo);
	for (int i = 0; i < s->n_er; i++)
		free(s->er[i]);
	free(s->er);
	free(s->xq);
	free(s->trace);
	for (int i = 0; i < s->n_gemm; i++)
		free(s->gemm[i]);
	free(s->gemm);
	for (int i = 0; i < s->n_panels; i++)
		free(s->panel[i]);
	free(s->panel);
	memset(s, 0, sizeof(*s));
}

/* --- activations: one task per group of tokens --- */

struct act_job {
	const float *x;
	int n, nt, per;
	uint8_t *out;
	size_t stride;
	q_from_float_fn vdt;    /* one of the two */
	q_act_fn act;
	/* q8p rows made from the type's vec_dot_type (VIA, quantized by
	 * VIA_FN): the int8 GEMM then sees the levels the dot products see. */
	enum ggml_type via;
	q_from_float_fn via_fn;
};

static void
act_task(void *arg, int task, int worker)
{
	const struct act_job *j = arg;
	int t0 = task * j->per, t1 = t0 + j->per < j->nt ? t0 + j->per : j->nt;
	(void)worker;
	if (j->via_fn) {
		/* Blocks of 32 or 256 levels plus scales: a row of the via type
		 * is at most 36/32 of N bytes (Q8_1), Q8_K's 292/256. */
		uint8_t *buf = malloc(q_row_size(j->via, j->n));
		for (int t = t0; buf && t < t1; t++) {
			j->via_fn(j->x + (size_t)t * j->n, buf, j->n);
			q_q8p_from_vdt(buf, j->via, j->out + (size_t)t * j->stride, j->n);
		}
		if (buf) {
			free(buf);
			return;
		}
		/* Out of memory: the tier's own q8p rounding, a little less close
		 * to the dot products' but correct. */
	}
	for (int t = t0; t < t1; t++) {
		if (j->vdt)
			j->vdt(j->x + (size_t)t * j->n, j->out + (size_t)t * j->stride, j->n);
		else
			j->act(j->x + (size_t)t * j->n, j->out + (size_t)t * j->stride, j->n);
	}
}

/* Makes J's q8p rows through VT when VT is an int8 format whose blocks
 * q8p can hold as they are: in one pass where the tier has that, with no
 * row of VT in between (malloc'd per call) read back by the generic
 * q_q8p_from_vdt.  Generation of Qwen2.5-0.5B Q4_0, avx512bf16, 2
 * threads: the caller's work between the gate/up and the down GEMV (SiLU,
 * then these rows) 13.5-15.6k -> 10.3-13.3k TSC cycles a layer in six
 * interleaved pairs; in a hot loop the two ways cost the same. */
static void
q8p_via(struct act_job *j, const struct q_kernels *k, enum ggml_type vt)
{
	const int q8k = vt == GGML_TYPE_Q8_K && j->n % QK_K == 0;
	const q_act_fn one = q8k ? k->act_q8p_k : k->act_q8p_h;

	if (vt != GGML_TYPE_Q8_0 && vt != GGML_TYPE_Q8_1 && !q8k)
		return;
	if (one) {
		j->act = one;
		j->vdt = NULL;
		return;
	}
	j->via = vt;
	j->via_fn = q_kern_act_vdt(k, vt);
}

/* X rounded to the levels of VT (Q8_0, Q8_1 or Q8_K) and back to floats,
 * for products through sgemm on dequantized weights: the rounding the dot
 * products (and llama.cpp) give the activations.  NULL when VT is none of
 * these, or memory is short (the floats are then used as they are). */
static float *
rounded_act(const float *x, int n, int nt, const struct q_kernels *k, enum ggml_type vt)
{
	struct act_job j;
	memset(&j, 0, sizeof(j));
	j.n = n;
	q8p_via(&j, k, vt);
	if (!j.via_fn && !j.act)
		return NULL;
	float *xr = malloc((size_t)n * nt * sizeof(float));
	/* The row of VT only where the q8p rows are made through it. */
	uint8_t *v = j.via_fn ? malloc(q_row_size(vt, n)) : NULL, *row = malloc(Q8P_ROW_BYTES(n));
	const int ok = row && (v || !j.via_fn);
	for (int t = 0; xr && ok && t < nt; t++) {
		if (j.via_fn) {
			j.via_fn(x + (size_t)t * n, v, n);
			q_q8p_from_vdt(v, vt, row, n);
		} else {
			j.act(x + (size_t)t * n, row, n);
		}
		q_q8p_to_float(row, xr + (size_t)t * n, n);
	}
	if (!ok) {
		free(xr);
		xr = NULL;
	}
	free(v);
	free(row);
	return xr;
}

static void
act_convert(struct pool *p, struct act_job *j)
{
	/* Small batches are not worth waking the workers for. */
	if ((size_t)j->nt * j->n < 65536) {
		j->per = j->nt;
		act_task(j, 0, 0);
		return;
	}
	j->per = (j->nt + 2 * pool_size(p) - 1) / (2 * pool_size(p));
	pool_run_tasks(p, act_task, j, (j->nt + j->per - 1) / j->per);
}

/* --- GEMM: tasks are chunks of rows by chunks of tokens --- */

/*
 * Tokens per GEMM task.  A task of 32 rows by 4096 tokens of an FFN's
 * 4864 inputs is 1.3 G int8 operations, too long between two looks at
 * the abort flag; chunks of 768 tokens cost one more packing of the
 * task's rows per chunk (nothing next to the products), and being a
 * multiple of every microkernel's width (4, 6, 8, 12 tokens) they leave
 * each token's sums as they were.
 */
#define MM_GEMM_TOKENS 768

struct gemm_job {
	struct q_gemm_args a;
	q_gemm_fn fn;
	int rows;       /* per task */
	int d;
	int n_tc;       /* token chunks */
	void **scratch;
};

static void
gemm_task(void *arg, int task, int worker)
{
	const struct gemm_job *j = arg;
	const int rc = task / j->n_tc, t0 = task % j->n_tc * MM_GEMM_TOKENS;
	int r0 = rc * j->rows, r1 = r0 + j->rows < j->d ? r0 + j->rows : j->d;
	struct q_gemm_args a = j->a;

	a.x += (size_t)t0 * a.x_stride;
	a.out += (size_t)t0 * a.ldo;
	a.nt = a.nt - t0 < MM_GEMM_TOKENS ? a.nt - t0 : MM_GEMM_TOKENS;
	j->fn(&a, r0, r1, j->scratch[worker]);
}

/* OUT (NT, D) = the tier's GEMM of W (D rows of type TYPE, W_STRIDE
 * bytes apart, packed or not, N inputs) with X (NT rows in the kernel's format, X_STRIDE
 * apart), in tasks of row chunks by token chunks. */
static void
gemm_run(struct pool *p, struct mm_scratch *s, const struct q_kernels *k, enum ggml_type type, int packed,
	 const void *w, size_t w_stride, int d, int n, const uint8_t *x, size_t x_stride, int nt, float *out)
{
	struct gemm_job j;

	memset(&j, 0, sizeof(j));
	j.a.type = type;
	j.a.packed = packed;
	j.a.w = w;
	j.a.w_stride = w_stride;
	j.a.n = n;
	j.a.x = x;
	j.a.x_stride = x_stride;
	j.a.nt = nt;
	j.a.out = out;
	j.a.ldo = (size_t)d;
	j.fn = k->t[type].gemm;
	j.d = d;
	j.rows = k->gemm_rows;
	if (k->t[type].gemm_act == Q_ACT_F32)
		j.rows = mm_gemm_f_rows(d, pool_size(p), k->gemm_rows, packed);
	j.n_tc = (nt + MM_GEMM_TOKENS - 1) / MM_GEMM_TOKENS;
	j.scratch = s->gemm;
	pool_run_tasks(p, gemm_task, &j, (d + j.rows - 1) / j.rows * j.n_tc);
}

/* --- GEMV: chunks of rows, all tokens a few at a time --- */

#define GEMV_MAX_RANGES 64

struct gemv_part {
	q_gemv_fn fn;
	float *out;               /* (nt, d) */
	int d;
	const uint8_t *w;
	size_t ws;
	const uint8_t *x;         /* the activations in the format FN takes */
	size_t xs;
};

/* Products of several matrices by the same activations, in one job: the
 * parts' rows in units (of a packed group, or 8 rows), one after the
 * other, split into a range per thread (gemv_run). */
struct gemv_job {
	struct pool *p;
	const struct mm_reads *next;       /* what the next job reads, or NULL */
	int n, nt, n_parts, n_ranges;
	struct gemv_part part[MM_MAX_PARTS];
	int unit[MM_MAX_PARTS];            /* rows per unit */
	uint32_t first[MM_MAX_PARTS + 1];  /* each part's first unit; the units */
	uint32_t min[MM_MAX_PARTS];        /* the fewest units a claim takes */
	uint32_t max[MM_MAX_PARTS];        /* the most (with company) */
	uint32_t min_steal;
	struct pool_range range[GEMV_MAX_RANGES];
};

/* Rows [R0, R1) of part G, for every token. */
static void
gemv_rows(const struct gemv_job *j, const struct gemv_part *g, int r0, int r1)
{
	for (int t = 0; t < j->nt; t += Q_GEMV_MAX_T) {
		int tt = j->nt - t < Q_GEMV_MAX_T ? j->nt - t : Q_GEMV_MAX_T;
		g->fn(j->n, g->out + (size_t)t * g->d + r0, (size_t)g->d, g->w + (size_t)r0 * g->ws, g->ws, r1 - r0,
		    g->x + (size_t)t * g->xs, g->xs, tt);
	}
}

static int
gemv_part_of(const struct gemv_job *j, uint32_t u)
{
	int i = 0;
	while (u >= j->first[i + 1])
		i++;
	return i;
}

/* A claim from the front of [LO, HI): a quarter of it, at least the
 * part's minimum, never past the part's end (alone: the whole part). */
static uint32_t
gemv_want(const void *ctx, uint32_t lo, uint32_t hi)
{
	const struct gemv_job *j = ctx;
	const int i = gemv_part_of(j, lo);
	uint32_t c = j->n_ranges == 1 ? hi - lo : (hi - lo) / 4;
	c = c > j->max[i] ? j->max[i] : c;
	c = c < j->min[i] ? j->min[i] : c;
	return c < j->first[i + 1] - lo ? c : j->first[i + 1] - lo;
}

/*
 * Reading ahead (pool_read_ahead): a thread that has finished its share
 * of one GEMV job fetches, while it waits, the first MM_AHEAD_BYTES of
 * its share of the next one (what that job read at the last token,
 * mm_trace_step) -- while the caller works alone between the two (the
 * norms, the attention, the activations' conversion), or finishes its
 * own share.  Per token, alternating on and off in one run (Qwen2.5-0.5B,
 * 2 threads, avx512bf16, 128 tokens, 192 of each): Q4_0 1.3-4.1% faster
 * over 12 runs, Q8_0 2.6, 2.6%, Q4_K_M 1.7, 2.2%, F16 0.4, 0.5%; 128,
 * 512 KiB and 1 MiB ahead no better than 256 (1.7-3.7%), into L1 or L2
 * alike.
 */
#define MM_AHEAD_BYTES (256u << 10)
_Static_assert(MM_MAX_PARTS <= POOL_AHEAD_EXTENTS, "a share's extents fit what the pool reads ahead");

int
mm_reads_share(const struct mm_reads *r, int task, int n, size_t max, const void **ptr, size_t *len)
{
	size_t total = 0;
	int m = 0;

	for (int i = 0; i < r->n; i++)
		total += r->len[i];
	size_t at = total * task / n, want = total * (task + 1) / n - at;
	want = want < max ? want : max;
	for (int i = 0; i < r->n && want > 0; i++) {
		if (at >= r->len[i]) {
			at -= r->len[i];
			continue;
		}
		const size_t take = r->len[i] - at < want ? r->len[i] - at : want;
		ptr[m] = r->p[i] + at;
		len[m++] = take;
		want -= take;
		at = 0;
	}
	return m;
}

static void
gemv_task(void *arg, int task, int worker)
{
	struct gemv_job *j = arg;
	uint32_t lo, hi;
	while (pool_range_next(j->range, j->n_ranges, task, j->min_steal, gemv_want, j, &lo, &hi)) {
		const int i = gemv_part_of(j, lo);
		const struct gemv_part *g = &j->part[i];
		const int r0 = (int)(lo - j->first[i]) * j->unit[i], r1 = (int)(hi - j->first[i]) * j->unit[i];
		gemv_rows(j, g, r0, r1 < g->d ? r1 : g->d);
	}
	/* The same task's share of the next job, for this thread to read
	 * ahead while it waits. */
	const void *ptr[MM_MAX_PARTS];
	size_t len[MM_MAX_PARTS];
	pool_read_ahead(j->p, worker, ptr, len,
	    j->next ? mm_reads_share(j->next, task, j->n_ranges, MM_AHEAD_BYTES, ptr, len) : 0);
}

const struct mm_reads *
mm_trace_step(struct mm_scratch *s, const struct mm_reads *cur)
{
	if (!s->trace || cur->n < 1)
		return NULL;
	if (s->trace_at > 0 && s->trace[0].p[0] == cur->p[0]) {
		s->trace_len = s->trace_at;
		s->trace_at = 0;
	}
	if (s->trace_at >= MM_TRACE_MAX)
		return NULL;
	const int i = s->trace_at++;
	s->trace[i] = *cur;
	if (i + 1 < s->trace_len)
		return &s->trace[i + 1];
	return i + 1 == s->trace_len ? &s->trace[0] : NULL;
}

/* --- the scalar tier's large batches: dequantized panels into sgemm --- */

struct blas_job {
	struct pool *p;
	float *out;
	int d, n, nt;
	const float *x;
	const struct ltensor *w;
	struct mm_scratch *s;
};

/* Units (pairs of inputs) of a packed group converted at a time. */
#define MM_UNPACK_UNITS 64

void
mm_float_rows(const struct ltensor *w, int r, int rows, float *panel)
{
	const struct q_kernels *kk = q_kern();
	const q_to_float_fn to_float = kk->t[w->type].to_float;
	const int g = w->packed, n = (int)w->ne0;
	/* the tier's own, for the groups it packs */
	const q_unpack_fn unpack = g == kk->pack_rows ? kk->t[w->type].unpack_f : NULL;
	const uint8_t *base = w->data;
	const int64_t grouped = g > 1 ? w->ne1 / g * g : 0;
	int k = 0;

	/* The tier's one pass where it has one; else a group's units as they
	 * lie (unit u of its G rows side by side) converted a chunk at a
	 * time, each pair then moved to its row. */
	for (; k + g <= rows && r + k < grouped; k += g) {
		const uint8_t *grp = base + (size_t)(r + k) * w->row_bytes;
		float tmp[MM_UNPACK_UNITS * 2 * MM_UNPACK_MAX_G];
		if (unpack) {
			unpack(grp, n, panel + (size_t)k * n, (size_t)n);
			continue;
		}
		for (int u0 = 0; u0 < n / 2; u0 += MM_UNPACK_UNITS) {
			const int nu = n / 2 - u0 < MM_UNPACK_UNITS ? n / 2 - u0 : MM_UNPACK_UNITS;
			to_float(grp + (size_t)u0 * g * 4, tmp, (int64_t)nu * g * 2);
			for (int u = 0; u < nu; u++)
				for (int q = 0; q < g; q++)
					memcpy(panel + (size_t)(k + q) * n + 2 * (u0 + u), tmp + ((size_t)u * g + q) * 2,
					    2 * sizeof(float));
		}
	}
	/* Rows as in the file: unpacked, or past the last whole group. */
	for (; k < rows; k++)
		to_float(base + (size_t)(r + k) * w->row_bytes, panel + (size_t)k * n, n);
}

static void
blas_worker(void *arg, int ith, int nth)
{
	const struct blas_job *j = arg;
	/* Slices of whole packed groups (the last one's end the matrix's). */
	const int g = j->w->packed > 1 ? j->w->packed : 1, units = (j->d + g - 1) / g;
	int r0 = (int)((int64_t)units * ith / nth) * g, r1 = (int)((int64_t)units * (ith + 1) / nth) * g;
	int per = (int)(j->s->panel_bytes / ((size_t)j->n * sizeof(float))) / g * g;   /* at least 16 rows: panels_alloc */
	float *panel = j->s->panel[ith];
	const uint8_t *wbase = j->w->data;

	r1 = r1 < j->d ? r1 : j->d;
	for (int r = r0; r < r1 && !pool_poll(j->p); r += per) {
		int rows = r1 - r < per ? r1 - r : per;
		const float *wf;
		if (j->w->type == GGML_TYPE_F32 && !j->w->packed) {
			wf = (const float *)(wbase + (size_t)r * j->w->row_bytes);
		} else {
			mm_float_rows(j->w, r, rows, panel);
			wf = panel;
		}
		/* out[t][r + k] = sum_i x[t][i] * wf[k][i] */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->nt, rows, j->n, 1.0f,
		    j->x, j->n, wf, j->n, 0.0f, j->out + r, j->d);
	}
}

/*
 * The GEMV's rows split into one range of about equal bytes per thread
 * (of all the job's matrices), in units of a packed group (PACKED[i]) or
 * 8 rows; each thread reads its range front to back in claims of a
 * quarter of what it has left (32 KiB to 1 MiB) and, done, takes half of
 * what another has left (pool_range_next; not under 64 KiB).  Fewer,
 * longer streams matter: with tasks of 32 KiB throughout, generation on
 * 2 threads ran at 36 t/s on Qwen2.5-0.5B Q8_0, avx512 tiers, against
 * 52 with tasks of 512 KiB; each task is a stream the hardware's
 * prefetch starts afresh.  The last plan, tasks of 1/threads of the
 * weights left (guided self-scheduling), gave the caller half of every
 * job in one task, and a thread that read its half more slowly than the
 * other read the rest left that one waiting.  perf, tg256, avx512bf16, 2
 * threads, two interleaved rounds, the pool's waiting and claiming as a
 * share of both threads' time, guided / ranges: Qwen2.5-0.5B Q4_K_M
 * 12.8, 12.3 / 11.8, 11.9%, F16 6.0, 7.0 / 5.3, 5.5%, Qwen3-0.6B IQ4_XS
 * 12.7, 16.5 / 13.8, 13.6% (the worker's idle time down 2-3 points, the
 * claims' compare-and-swaps up 0.5-1).  kbench 151936 x 896 Q5_0 from
 * memory, 12 interleaved pairs: share of the bound level (medians 96.5 /
 * 98.5%).
 */
static void
gemv_run(struct pool *p, struct gemv_job *j, const int *packed)
{
	const int nth = pool_size(p);
	size_t total = 0, big = 1;

	j->p = p;
	j->first[0] = 0;
	for (int i = 0; i < j->n_parts; i++) {
		const struct gemv_part *g = &j->part[i];
		const size_t ub = (size_t)(j->unit[i] = packed[i] > 1 ? packed[i] : 8) * (g->ws ? g->ws : 1);
		j->first[i + 1] = j->first[i] + (uint32_t)((g->d + j->unit[i] - 1) / j->unit[i]);
		j->min[i] = (uint32_t)((32768 + ub - 1) / ub);
		j->max[i] = (uint32_t)((1048576 + ub - 1) / ub);
		big = ub > big ? ub : big;
		total += (size_t)g->d * g->ws;
	}
	j->min_steal = (uint32_t)((65536 + big - 1) / big);
	j->n_ranges = nth < GEMV_MAX_RANGES ? nth : GEMV_MAX_RANGES;
	/* Range k from the unit where the bytes before it reach k / n of all. */
	uint32_t b[GEMV_MAX_RANGES + 1];
	size_t seen = 0;
	int k = 1;
	b[0] = 0;
	for (int i = 0; i < j->n_parts; i++) {
		const size_t ub = (size_t)j->unit[i] * j->part[i].ws, bytes = (size_t)j->part[i].d * j->part[i].ws;
		for (; k < j->n_ranges && total * k / j->n_ranges < seen + bytes; k++)
			b[k] = j->first[i] + (uint32_t)((total * k / j->n_ranges - seen + ub - 1) / ub);
		seen += bytes;
	}
	while (k <= j->n_ranges)
		b[k++] = j->first[j->n_parts];
	for (k = 0; k < j->n_ranges; k++)
		pool_range_set(&j->range[k], b[k], b[k + 1]);
	pool_run_tasks(p, gemv_task, j, j->n_ranges);
}

/*
 * Batches of packed rows from this size use the GEMM, smaller ones the
 * packed GEMV (4 tokens per pass over the rows).  kbench, 896 x 4864, one
 * thread, avx512bf16 tier, ms GEMM / GEMV: Q4_K 0.233 / 0.068 at 2
 * tokens, 0.370 / 0.248 at 8, 0.618 / 0.497 at 16, 4.38 / 4.51 at 128;
 * Q4_0 0.216 / 0.110 at 4, 0.532 / 0.500 at 16.  In cache the GEMV wins
 * up to 32 tokens; from memory each pass reads the weights again, so the
 * GEMM takes over at 8 (two passes).
 */
#define MM_PACKED_GEMM_MIN_NT 8

/* --- exact activations: two int8 rows per token --- */

struct exact_job {
	const float *x;
	int n, nt, per;
	uint8_t *out;           /* rows 2t and 2t + 1 for token t */
	size_t stride;
	q_act_fn act;
	float **er;
};

static void
exact_task(void *arg, int task, int worker)
{
	const struct exact_job *j = arg;
	int t0 = task * j->per, t1 = t0 + j->per < j->nt ? t0 + j->per : j->nt;
	float *r = j->er[worker];

	for (int t = t0; t < t1; t++) {
		const float *x = j->x + (size_t)t * j->n;
		uint8_t *hi = j->out + 2 * (size_t)t * j->stride, *lo = hi + j->stride;
		j->act(x, hi, j->n);
		q_q8p_to_float(hi, r, j->n);
		for (int i = 0; i < j->n; i++)
			r[i] = x[i] - r[i];
		j->act(r, lo, j->n);
	}
}

/*
 * OUT = X W^T with X exact to about 16 bits: each token's row is rounded
 * to q8p (scales per 32 inputs) and what that rounding left over is
 * rounded again, at a 127th or so of the first scale; the tier's int8
 * GEMM takes both rows as two tokens and their products are added.  In
 * chunks of tokens by slices of rows whose products fit the scratch.
 */
static void
mm_exact(struct pool *p, struct mm_scratch *s, float *out, int d, const float *x, int n,
	 const struct ltensor *w, int nt, const struct q_kernels *k)
{
	size_t rb = Q8P_ROW_BYTES(n);
	int dd = d < (int)(s->eo_floats / 2) ? d : (int)(s->eo_floats / 2);
	const q_gemv_fn gemv = w->packed ? k->t[w->type].gemv_packed : k->t[w->type].gemv;

	/* Slices of rows start on a packed group. */
	if (w->packed > 1 && dd < d && dd >= w->packed)
		dd -= dd % w->packed;
	int chunk = (int)(s->eo_floats / (2 * (size_t)dd));

	if (chunk > s->n_batch)
		chunk = s->n_batch;
	for (int t0 = 0; t0 < nt && !pool_stopped(p); t0 += chunk) {
		int c = nt - t0 < chunk ? nt - t0 : chunk;
		struct exact_job ej = { x + (size_t)t0 * n, n, c, c, s->ex, rb, k->act_q8p, s->er };
		if ((size_t)c * n >= 65536) {
			ej.per = (c + 2 * pool_size(p) - 1) / (2 * pool_size(p));
			pool_run_tasks(p, exact_task, &ej, (c + ej.per - 1) / ej.per);
		} else {
			exact_task(&ej, 0, 0);
		}
		for (int r0 = 0; r0 < d && !pool_stopped(p); r0 += dd) {
			int rows = d - r0 < dd ? d - r0 : dd;
			const struct q_type_kern *tk = &k->t[w->type];
			const uint8_t *ws = (const uint8_t *)w->data + (size_t)r0 * w->row_bytes;
			/* Few rows of q8p: the tier's GEMV takes them as they are. */
			if ((tk->gemv_act == Q_ACT_Q8P || w->packed) &&
			    2 * c < (w->packed ? MM_PACKED_GEMM_MIN_NT : tk->gemm_min_nt)) {
				struct gemv_job v = { .n = n, .nt = 2 * c, .n_parts = 1 };
				v.part[0] = (struct gemv_part){ gemv, s->eo, rows, ws, w->row_bytes, s->ex, rb };
				gemv_run(p, &v, &w->packed);
			} else {
				gemm_run(p, s, k, w->type, w->packed, ws, w->row_bytes, rows, n, s->ex, rb, 2 * c, s->eo);
			}
			if (pool_stopped(p))
				return;
			for (int t = 0; t < c; t++) {
				float *o = out + (size_t)(t0 + t) * d + r0;
				const float *hi = s->eo + 2 * (size_t)t * rows, *lo = hi + rows;
				for (int r = 0; r < rows; r++)
					o[r] = hi[r] + lo[r];
			}
		}
	}
}

static atomic_ulong blas_products;

unsigned long
mm_blas_products(void)
{
	return atomic_load_explicit(&blas_products, memory_order_relaxed);
}

static int
quantized(enum ggml_type t)
{
	return t != GGML_TYPE_F32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16;
}

enum mm_path { MM_EXACT, MM_GEMM, MM_BLAS, MM_GEMV };

/* Which way the product of W by NT tokens of N inputs goes. */
static enum mm_path
mm_path(struct pool *p, const struct mm_scratch *s, const struct ltensor *w, int n, int nt)
{
	const struct q_type_kern *tk = &q_kern()->t[w->type];

	if (s->exact && quantized(w->type) && tk->gemm && tk->gemm_act == Q_ACT_Q8P && s->n_gemm >= pool_size(p))
		return MM_EXACT;
	/* Float weights: the tiles or OpenBLAS, as measured (gemm-choice.c);
	 * packed half floats come out of their groups for OpenBLAS
	 * (mm_float_rows). */
	const int blas = (!w->packed || mm_float_unpacks(w)) && tk->gemm && tk->gemm_act == Q_ACT_F32 && nt >= MM_BLAS_MIN_BATCH && s->n_panels >= pool_size(p) &&
	    q_float_gemm_choice(w->type, nt, NULL) == Q_FLOAT_GEMM_OPENBLAS;
	if (tk->gemm && !blas && nt >= (w->packed ? MM_PACKED_GEMM_MIN_NT : tk->gemm_min_nt) && s->n_gemm >= pool_size(p) &&
	    !(tk->gemm_act == Q_ACT_BF16 && (n % 2 || s->exact)))
		return MM_GEMM;
	if ((blas || !tk->gemm) && (nt >= MM_BLAS_MIN_BATCH || (s->exact && quantized(w->type))) &&
	    s->n_panels >= pool_size(p))
		return MM_BLAS;
	return MM_GEMV;
}

/* The GEMV's activation format for W: 0 the floats as they are, 1 q8p
 * rows, 2 rows of the type's vec_dot_type. */
static int
gemv_act_kind(const struct ltensor *w)
{
	const struct q_type_kern *tk = &q_kern()->t[w->type];
	if (q_traits_get(w->type)->vec_dot_type == GGML_TYPE_F32)
		return 0;
	return tk->gemv_act == Q_ACT_Q8P || w->packed ? 1 : 2;
}

static size_t
gemv_act_row(const struct ltensor *w, int n)
{
	int kind = gemv_act_kind(w);
	return kind == 0 ? (size_t)n * sizeof(float) : kind == 1 ? Q8P_ROW_BYTES(n) :
	    q_row_size(q_traits_get(w->type)->vec_dot_type, n);
}

/* X converted for W's GEMV into BUF (unless the floats serve as they are);
 * the rows and their stride. */
static const uint8_t *
gemv_act(struct pool *p, const struct ltensor *w, const float *x, int n, int nt, uint8_t *buf, size_t *xs)
{
	const struct q_kernels *k = q_kern();
	const enum ggml_type vt = q_traits_get(w->type)->vec_dot_type;
	const int kind = gemv_act_kind(w);
	struct act_job aj = { x, n, nt, 0, buf, gemv_act_row(w, n), NULL, NULL, GGML_TYPE_F32, NULL };

	*xs = aj.stride;
	if (kind == 0)
		return (const uint8_t *)x;
	if (kind == 1) {
		aj.act = k->act_q8p;
		q8p_via(&aj, k, vt);
	} else {
		aj.vdt = q_kern_act_vdt(k, vt);
	}
	act_convert(p, &aj);
	return buf;
}

/* Same activations for W and V: same GEMV format, same rounding. */
static int
same_act(const struct ltensor *w, const struct ltensor *v)
{
	return gemv_act_kind(w) == gemv_act_kind(v) &&
	    q_traits_get(w->type)->vec_dot_type == q_traits_get(v->type)->vec_dot_type;
}

/* The products of PARTS by X as one GEMV job, each part's activations
 * converted once per format into the scratch (the caller checked that
 * every part takes the GEMV and that they fit). */
static void
gemv_many(struct pool *p, struct mm_scratch *s, const struct mm_part *parts, int n_parts, const float *x, int n,
	  int nt)
{
	const struct q_kernels *k = q_kern();
	struct gemv_job j = { .n = n, .nt = nt, .n_parts = n_parts };
	int packed[MM_MAX_PARTS];
	size_t used = 0;

	for (int i = 0; i < n_parts; i++) {
		const struct ltensor *w = parts[i].w;
		const struct q_type_kern *tk = &k->t[w->type];
		const uint8_t *xa;
		size_t xs;
		int h = 0;
		while (h < i && !same_act(parts[h].w, w))
			h++;
		if (h < i) {
			xa = j.part[h].x;
			xs = j.part[h].xs;
		} else {
			xa = gemv_act(p, w, x, n, nt, s->xq + used, &xs);
			if (xa != (const uint8_t *)x)
				used += line_bytes((size_t)nt * xs);
		}
		j.part[i] = (struct gemv_part){ w->packed ? tk->gemv_packed : tk->gemv, parts[i].out, (int)w->ne1,
			w->data, w->row_bytes, xa, xs };
		packed[i] = w->packed;
	}
	struct mm_reads cur = { .n = n_parts };
	for (int i = 0; i < n_parts; i++) {
		cur.p[i] = j.part[i].w;
		cur.len[i] = (size_t)j.part[i].d * j.part[i].ws;
	}
	j.next = mm_trace_step(s, &cur);
	gemv_run(p, &j, packed);
}

void
mm_matmul_many(struct pool *p, struct mm_scratch *s, const struct mm_part *parts, int n_parts, const float *x,
	       int n, int nt)
{
	size_t used = 0;
	int fused = n_parts > 1 && n_parts <= MM_MAX_PARTS;

	/* One job when every matrix takes the GEMV and their activations
	 * fit the scratch side by side. */
	for (int i = 0; fused && i < n_parts; i++) {
		const struct ltensor *w = parts[i].w;
		int seen = 0;
		if (mm_path(p, s, w, n, nt) != MM_GEMV) {
			fused = 0;
			break;
		}
		for (int h = 0; h < i; h++)
			seen |= same_act(parts[h].w, w);
		if (!seen && gemv_act_kind(w) != 0)
			used += line_bytes((size_t)nt * gemv_act_row(w, n));
	}
	if (!fused || used > s->cap) {
		for (int i = 0; i < n_parts; i++)
			mm_matmul(p, s, parts[i].out, (int)parts[i].w->ne1, x, n, parts[i].w, nt);
		return;
	}
	gemv_many(p, s, parts, n_parts, x, n, nt);
}

void
mm_matmul(struct pool *p, struct mm_scratch *s, float *out, int d, const float *x, int n,
	  const struct ltensor *w, int nt)
{
	const struct q_kernels *k = q_kern();
	const struct q_type_kern *tk = &k->t[w->type];
	const struct q_traits *qt = q_traits_get(w->type);

	switch (mm_path(p, s, w, n, nt)) {
	case MM_EXACT:
		mm_exact(p, s, out, d, x, n, w, nt, k);
		return;
	case MM_GEMM: {
		const uint8_t *xa = (const uint8_t *)x;
		size_t xs = (size_t)n * sizeof(float);
		if (tk->gemm_act != Q_ACT_F32) {
			struct act_job aj = { x, n, nt, 0, s->xq, q_act_row_bytes(tk->gemm_act, w->type, n), NULL,
			    tk->gemm_act == Q_ACT_BF16 ? k->act_bf16 : k->act_q8p, GGML_TYPE_F32, NULL };
			if (tk->gemm_act == Q_ACT_Q8P)
				q8p_via(&aj, k, qt->vec_dot_type);
			act_convert(p, &aj);
			xa = s->xq;
			xs = aj.stride;
		}
		gemm_run(p, s, k, w->type, w->packed, w->data, w->row_bytes, d, n, xa, xs, nt, out);
		return;
	}
	case MM_BLAS: {
		float *xr = s->exact ? NULL : rounded_act(x, n, nt, k, qt->vec_dot_type);
		struct blas_job bj = { p, out, d, n, nt, xr ? xr : x, w, s };
		atomic_fetch_add_explicit(&blas_products, 1, memory_order_relaxed);
		pool_run(p, blas_worker, &bj);
		free(xr);
		return;
	}
	case MM_GEMV:
		gemv_many(p, s, &(struct mm_part){ out, w }, 1, x, n, nt);
		return;
	}
}
