/* tlinear.c -- y = W x + s B (A x): W frozen in its own (quantized) type, dequantized a tile at a time, on a pool of threads. */
#include "config.h"

#include <string.h>

#include <cblas.h>

#include "llm/pool.h"
#include "natter/quant.h"
#include "natter/train.h"
#include "train/splitmix.h"

/* Floats of W dequantized at once by one thread: 256 KiB, small beside any cache-sized
 * GEMM panel, and the whole matrix never exists in float32. */
#define TILE_FLOATS (1 << 16)

static int
tile_rows(const struct tlinear *l)
{
	int r = TILE_FLOATS / l->w.n_in;
	if (r < 1)
		r = 1;
	return r < l->w.n_out ? r : l->w.n_out;
}

/*
 * Scratch, in floats, in this order:
 *   tiles     NTH x tile_rows x n_in   one tile of W per thread
 *   xd, dxd   T x n_in each            drop(x) and d drop(x) (LoRA only)
 *   du        T x rank                 (LoRA only)
 *   partial   (NTH - 1) x T x n_in     the other threads' shares of dx, summed at the end
 */
struct tl_scratch {
	float *tiles, *xd, *dxd, *du, *partial;
};

static size_t
layout(const struct tlinear *l, int T, int nth, float *base, struct tl_scratch *s)
{
	const size_t tin = (size_t)T * l->w.n_in;
	size_t at = (size_t)nth * tile_rows(l) * l->w.n_in;

	if (s)
		s->tiles = base;
	if (l->lora) {
		if (s) {
			s->xd = base + at;
			s->dxd = base + at + tin;
			s->du = base + at + 2 * tin;
		}
		at += 2 * tin + (size_t)T * l->lora->rank;
	}
	if (s)
		s->partial = base + at;
	return at + (size_t)(nth - 1) * tin;
}

size_t
tlinear_scratch_floats(const struct tlinear *l, int T, int n_threads)
{
	return layout(l, T, n_threads < 1 ? 1 : n_threads, NULL, NULL);
}

static q_to_float_fn
dequantizer(enum ggml_type type)
{
	const struct q_traits *qt = q_traits_get(type);
	if (!qt->supported)
		return NULL;
	return qt->to_float_fast ? qt->to_float_fast : qt->to_float;
}

/* The dropout decision for element I under SEED: a stateless hash (splitmix64), so the
 * backward finds the forward's mask without storing it, and any split of the rows among
 * threads draws the same mask. */
static inline int
dropped(uint64_t seed, uint64_t i, float p)
{
	uint64_t z = splitmix64(seed + 0x9e3779b97f4a7c15ULL * i);   /* seed + gamma (i + 1), mixed */
	return (double)(z >> 11) * (1.0 / 9007199254740992.0) < p;
}

static inline void
split(int n, int ith, int nth, int *lo, int *hi)
{
	*lo = (int)((int64_t)n * ith / nth);
	*hi = (int)((int64_t)n * (ith + 1) / nth);
}

struct tl_job {
	const struct tlinear *l;
	const float *x, *u, *dy;
	float *y, *uo, *dx;
	int T, train, dropping;
	uint64_t seed;
	q_to_float_fn to_float;
	struct tl_scratch s;
};

/* W's rows [R0, R1) as float32: in place for an F32 weight, else dequantized into TILE. */
static const float *
w_rows(const struct tl_job *j, int r0, int rows, float *tile)
{
	const uint8_t *p = (const uint8_t *)j->l->w.data + (size_t)r0 * j->l->w.row_bytes;
	if (j->l->w.type == GGML_TYPE_F32)
		return (const float *)p;
	j->to_float(p, tile, (int64_t)rows * j->l->w.n_in);
	return tile;
}

/* The LoRA input of rows [T0, T1): drop(x) into xd (or x itself), u = drop(x) A^T. */
static const float *
lora_input(const struct tl_job *j, int t0, int t1, float *u)
{
	const struct tlora *lo = j->l->lora;
	const int n_in = j->l->w.n_in;
	const float *xd = j->x;

	if (j->dropping) {
		const float keep = 1.0f / (1.0f - lo->dropout);
		for (size_t i = (size_t)t0 * n_in; i < (size_t)t1 * n_in; i++)
			j->s.xd[i] = dropped(j->seed, i, lo->dropout) ? 0.0f : j->x[i] * keep;
		xd = j->s.xd;
	}
	if (u && t1 > t0)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t1 - t0, lo->rank, n_in, 1.0f, xd + (size_t)t0 * n_in,
		    n_in, lo->a, n_in, 0.0f, u + (size_t)t0 * lo->rank, lo->rank);
	return xd;
}

/* Forward, phase 1 (LoRA only): each thread's rows of drop(x) and u. */
static void
fwd_lora_in(void *ctx, int ith, int nth)
{
	struct tl_job *j = ctx;
	int t0, t1;
	split(j->T, ith, nth, &t0, &t1);
	lora_input(j, t0, t1, j->uo);
}

/* Forward, phase 2: each thread's slice of the output columns, tile by tile, then the bias
 * and s u B^T on the same columns. */
static void
fwd_main(void *ctx, int ith, int nth)
{
	struct tl_job *j = ctx;
	const struct tlinear *l = j->l;
	const int n_in = l->w.n_in, n_out = l->w.n_out, R = tile_rows(l), T = j->T;
	float *tile = j->s.tiles + (size_t)ith * R * n_in;
	int c0, c1;

	split(n_out, ith, nth, &c0, &c1);
	for (int r0 = c0; r0 < c1; r0 += R) {
		int rows = c1 - r0 < R ? c1 - r0 : R;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, rows, n_in, 1.0f, j->x, n_in,
		    w_rows(j, r0, rows, tile), n_in, 0.0f, j->y + r0, n_out);
	}
	if (l->bias)
		for (int t = 0; t < T; t++)
			for (int i = c0; i < c1; i++)
				j->y[(size_t)t * n_out + i] += l->bias[i];
	if (l->lora && c1 > c0) {
		const struct tlora *lo = l->lora;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, c1 - c0, lo->rank, lo->scale, j->uo, lo->rank,
		    lo->b + (size_t)c0 * lo->rank, lo->rank, 1.0f, j->y + c0, n_out);
	}
}

/* Products below this many multiply-adds run on the calling thread alone: waking the
 * pool costs more than it saves (tiny models, short sequences). */
#define PAR_MIN_MACS (1 << 21)

static struct pool *
pool_for(const struct tlinear *l, struct pool *p, int T)
{
	if (!p || pool_size(p) < 2 || (double)T * l->w.n_in * l->w.n_out < PAR_MIN_MACS)
		return NULL;
	return p;
}

static void
run(struct pool *p, pool_fn fn, void *ctx)
{
	if (p)
		pool_run(p, fn, ctx);
	else
		fn(ctx, 0, 1);
}

static int
n_threads(struct pool *p)
{
	return p ? pool_size(p) : 1;
}

int
tlinear_fwd(const struct tlinear *l, struct pool *p, const float *x, int T, int train, uint64_t seed, float *y,
	    float *u, float *scratch)
{
	struct tl_job j = { .l = l, .x = x, .y = y, .uo = u, .T = T, .seed = seed };

	j.to_float = dequantizer(l->w.type);
	if (!j.to_float)
		return -1;
	p = pool_for(l, p, T);
	layout(l, T, n_threads(p), scratch, &j.s);
	if (l->lora) {
		j.dropping = train && l->lora->dropout > 0.0f;
		run(p, fwd_lora_in, &j);
	}
	run(p, fwd_main, &j);
	return 0;
}

/* Backward, phase 1 (LoRA only): each thread's rows of drop(x) and du = s dy B. */
static void
bwd_lora_du(void *ctx, int ith, int nth)
{
	struct tl_job *j = ctx;
	const struct tlora *lo = j->l->lora;
	const int n_out = j->l->w.n_out;
	int t0, t1;

	split(j->T, ith, nth, &t0, &t1);
	lora_input(j, t0, t1, NULL);
	if (t1 > t0)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t1 - t0, lo->rank, n_out, lo->scale,
		    j->dy + (size_t)t0 * n_out, n_out, lo->b, lo->rank, 0.0f, j->s.du + (size_t)t0 * lo->rank, lo->rank);
}

/*
 * Backward, phase 2: each thread takes a slice of W's rows (of dy's columns): its share of
 * dx += dy W goes into dx itself (thread 0) or its partial buffer, so that W is dequantized
 * once in all; dB's rows of the slice += s dy^T u.  And a slice of A's columns:
 * dA += du^T drop(x).
 */
static void
bwd_main(void *ctx, int ith, int nth)
{
	struct tl_job *j = ctx;
	const struct tlinear *l = j->l;
	const int n_in = l->w.n_in, n_out = l->w.n_out, R = tile_rows(l), T = j->T;
	float *tile = j->s.tiles + (size_t)ith * R * n_in;
	int c0, c1;

	split(n_out, ith, nth, &c0, &c1);
	if (j->dx) {
		float *dst = ith == 0 ? j->dx : j->s.partial + (size_t)(ith - 1) * T * n_in;
		float beta = ith == 0 ? 1.0f : 0.0f;
		if (c1 == c0 && ith > 0)
			memset(dst, 0, (size_t)T * n_in * sizeof(float));
		for (int r0 = c0; r0 < c1; r0 += R) {
			int rows = c1 - r0 < R ? c1 - r0 : R;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, n_in, rows, 1.0f, j->dy + r0, n_out,
			    w_rows(j, r0, rows, tile), n_in, beta, dst, n_in);
			beta = 1.0f;
		}
	}
	if (l->lora) {
		struct tlora *lo = l->lora;
		const float *xd = j->dropping ? j->s.xd : j->x;
		int a0, a1;
		if (c1 > c0)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, lo->rank, T, lo->scale, j->dy + c0, n_out,
			    j->u, lo->rank, 1.0f, lo->db + (size_t)c0 * lo->rank, lo->rank);
		split(n_in, ith, nth, &a0, &a1);
		if (a1 > a0)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, lo->rank, a1 - a0, T, 1.0f, j->s.du, lo->rank,
			    xd + a0, n_in, 1.0f, lo->da + a0, n_in);
	}
}

/* Backward, phase 3: each thread's rows of dx gather the partial shares (in thread order,
 * so that the sum does not depend on timing) and d drop(x) = du A through the mask. */
static void
bwd_gather(void *ctx, int ith, int nth)
{
	struct tl_job *j = ctx;
	const struct tlinear *l = j->l;
	const int n_in = l->w.n_in, T = j->T;
	int t0, t1;

	split(T, ith, nth, &t0, &t1);
	if (t1 <= t0)
		return;
	for (int k = 1; k < nth; k++) {
		const float *part = j->s.partial + (size_t)(k - 1) * T * n_in;
		for (size_t i = (size_t)t0 * n_in; i < (size_t)t1 * n_in; i++)
			j->dx[i] += part[i];
	}
	if (l->lora) {
		const struct tlora *lo = l->lora;
		float *dst = j->dropping ? j->s.dxd : j->dx;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t1 - t0, n_in, lo->rank, 1.0f,
		    j->s.du + (size_t)t0 * lo->rank, lo->rank, lo->a, n_in, j->dropping ? 0.0f : 1.0f,
		    dst + (size_t)t0 * n_in, n_in);
		if (j->dropping) {
			const float keep = 1.0f / (1.0f - lo->dropout);
			for (size_t i = (size_t)t0 * n_in; i < (size_t)t1 * n_in; i++)
				if (!dropped(j->seed, i, lo->dropout))
					j->dx[i] += j->s.dxd[i] * keep;
		}
	}
}

int
tlinear_bwd(const struct tlinear *l, struct pool *p, const float *x, int T, int train, uint64_t seed,
	    const float *u, const float *dy, float *dx, float *scratch)
{
	struct tl_job j = { .l = l, .x = x, .u = u, .dy = dy, .dx = dx, .T = T, .seed = seed };

	j.to_float = dequantizer(l->w.type);
	if (!j.to_float)
		return -1;
	p = pool_for(l, p, T);
	layout(l, T, n_threads(p), scratch, &j.s);
	if (l->lora) {
		j.dropping = train && l->lora->dropout > 0.0f;
		run(p, bwd_lora_du, &j);
	}
	run(p, bwd_main, &j);
	if (dx && (n_threads(p) > 1 || l->lora))
		run(p, bwd_gather, &j);
	return 0;
}
