/* attn.c -- attention as flash attention does it, on a CPU: blocks of queries against streamed blocks of keys, an online softmax, no score matrix. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "natter/quant.h"
#include "llm/attn.h"
#include "llm/hugemem.h"
#include "llm/kv.h"
#include "llm/pool.h"

/*
 * Sizes of the blocks.  A task holds up to ATTN_ROWS query rows (the
 * tokens of a query block times the query heads of one KV head) and
 * streams the keys ATTN_BK at a time: a block of keys and values as
 * floats (128 x 256 floats at the widest heads) and the scores of the
 * block stay in the core's cache.  A task of at least ATTN_T_ROWS rows
 * per KV head (a prompt's) runs the tier's transposed tiles (attn_ops
 * qk_t, softmax_t, pv_t: a column of scores per query row); else tiles
 * of at least ATTN_SGEMM_ROWS rows go through sgemm (the scalar tier's
 * wide ones too), smaller ones through the tier's vector helpers.
 * Measured, Qwen2.5-0.5B F16, 2 threads, a 4096-token prompt (Zen 5):
 * sgemm with the Haswell kernels this environment forces 287 t/s, the
 * avx512 tier's tiles 345-348 (Q8_0 434 -> 598; the tiles at ~78% of a
 * core's FMA peak); on the avx2 tier 176-183 -> 186.
 * Measured on one thread, 4096 positions of Qwen2.5-0.5B's 14 heads over
 * 2: 256 x 128 blocks ran at 63 GFLOP/s where 128 x 128 ran at 57 (75
 * once max, exp and scaling were vectorised; a large sgemm: 84); with 7
 * rows, a token of that model, sgemm beat a dot product per key 17 to 12
 * GFLOP/s.  Up to
 * ATTN_SLOTS_PER_THREAD partial results per thread let a long context
 * with few queries be split along the keys.  A token's few rows over an
 * F16 cache skip the floats altogether (ATTN_FUSED_ROWS below), and ask
 * memory for what comes next a few lines at each key.  Measured on one
 * thread (avx512bf16 machine, the other core busy), a token over 4000
 * positions x 6 layers of Qwen3.5-0.8B's two KV heads of 256 (49 MB), best
 * of 40: one head per task through floats and sgemm 8.7 ms; every head
 * per task, fused, prefetching in the kernels 5.8 ms (4.7 in 2 MiB pages,
 * kv.c).  A burst of prefetches per block instead (prefetch_block, still
 * used for the other cache types) stalled the core until memory took them.
 */
#define ATTN_ROWS 256
#define ATTN_BK 128
#define ATTN_SGEMM_ROWS 4
#define ATTN_SLOTS_PER_THREAD 6
/*
 * A few queries over a long context (generation) take every KV head in
 * one task: a block of keys is then whole position rows, one contiguous
 * stream, where a task of one head read a few hundred bytes out of each
 * row and waited on memory.  The block is as many keys as fit
 * ATTN_ALL_FLOATS floats of all heads (between 16 and ATTN_BK).
 */
#define ATTN_ALL_FLOATS 32768
/* Up to this many query rows meet an F16 cache's rows as they are
 * (attn_ops qk_h, pv_h); more go through floats (the transposed tiles or
 * sgemm). */
#define ATTN_FUSED_ROWS 8
/* Tasks of at least this many rows per KV head run the tier's transposed
 * tiles (attn_ops t_tiles) on every block. */
#define ATTN_T_ROWS 16

/* --- the tiers --- */

static void
f16_to_f32_ref(const qhalf *x, float *y, int n)
{
	for (int i = 0; i < n; i++)
		y[i] = q_f16_to_f32(x[i]);
}

static void
f32_to_f16_ref(const float *x, qhalf *y, int n)
{
	for (int i = 0; i < n; i++)
		y[i] = q_f32_to_f16(x[i]);
}

static float
max_ref(const float *x, int n)
{
	float m = x[0];
	for (int i = 1; i < n; i++)
		m = x[i] > m ? x[i] : m;
	return m;
}

static float
exp_sum_ref(float *x, int n, float m)
{
	float s = 0;
	for (int i = 0; i < n; i++)
		s += x[i] = expf(x[i] - m);
	return s;
}

static void
scale_ref(float *y, const float *x, int n, float a)
{
	for (int i = 0; i < n; i++)
		y[i] = a * x[i];
}

static void
qk_ref(const float *q, int r, int n, const float *k, int ldk, int nk, float *s, int lds)
{
	for (int i = 0; i < r; i++) {
		for (int j = 0; j < nk; j++) {
			float d = 0;
			for (int c = 0; c < n; c++)
				d += q[(size_t)i * n + c] * k[(size_t)j * ldk + c];
			s[(size_t)i * lds + j] = d;
		}
	}
}

static void
pv_ref(const float *p, int ldp, int r, const float *v, int ldv, int nk, int n, float *o, int ldo)
{
	for (int i = 0; i < r; i++)
		for (int j = 0; j < nk; j++)
			for (int c = 0; c < n; c++)
				o[(size_t)i * ldo + c] += p[(size_t)i * ldp + j] * v[(size_t)j * ldv + c];
}

static void
qk_h_ref(const float *q, int r, int n, const qhalf *k, int ldk, int nk, float *s, int lds, const uint8_t *pf,
	 int pfl)
{
	(void)pf;
	(void)pfl;
	for (int i = 0; i < r; i++) {
		for (int j = 0; j < nk; j++) {
			float d = 0;
			for (int c = 0; c < n; c++)
				d += q[(size_t)i * n + c] * q_f16_to_f32(k[(size_t)j * ldk + c]);
			s[(size_t)i * lds + j] = d;
		}
	}
}

static void
pv_h_ref(const float *p, int ldp, int r, const qhalf *v, int ldv, int nk, int n, float *o, int ldo, const uint8_t *pf,
	 int pfl)
{
	(void)pf;
	(void)pfl;
	for (int i = 0; i < r; i++)
		for (int j = 0; j < nk; j++)
			for (int c = 0; c < n; c++)
				o[(size_t)i * ldo + c] += p[(size_t)i * ldp + j] * q_f16_to_f32(v[(size_t)j * ldv + c]);
}

static void
qk_t_ref(const float *qt, int ldq, int nc, int n, const float *k, int ldk, int nk, float *st, int lds)
{
	for (int j = 0; j < nk; j++) {
		for (int c = 0; c < nc; c++) {
			float d = 0;
			for (int i = 0; i < n; i++)
				d += k[(size_t)j * ldk + i] * qt[(size_t)i * ldq + c];
			st[(size_t)j * lds + c] = d;
		}
	}
}

static void
softmax_t_ref(float *st, int lds, int nk, int nc, float *mx, float *sum, float *alpha)
{
	for (int c = 0; c < nc; c++) {
		float m = mx[c], l = 0;
		for (int j = 0; j < nk; j++)
			if (st[(size_t)j * lds + c] > m)
				m = st[(size_t)j * lds + c];
		for (int j = 0; j < nk; j++) {
			float *e = st + (size_t)j * lds + c;
			*e = *e - m < -87.0f ? 0.0f : expf(*e - m);
			l += *e;
		}
		alpha[c] = mx[c] - m < -87.0f ? 0.0f : expf(mx[c] - m);
		sum[c] = sum[c] * alpha[c] + l;
		mx[c] = m;
	}
}

static void
pv_t_ref(const float *pt, int ldp, int nr, const float *v, int ldv, int nk, int n, const float *alpha, float *o,
	 int ldo)
{
	for (int i = 0; i < nr; i++) {
		for (int c = 0; c < n; c++)
			o[(size_t)i * ldo + c] *= alpha[i];
		for (int j = 0; j < nk; j++)
			for (int c = 0; c < n; c++)
				o[(size_t)i * ldo + c] += pt[(size_t)j * ldp + i] * v[(size_t)j * ldv + c];
	}
}

/* The scalar tier's wide blocks go through sgemm (t_tiles 0): its
 * transposed forms are the tests' reference. */
static const struct attn_ops ops_scalar = {
	"scalar", f16_to_f32_ref, f32_to_f16_ref, max_ref, exp_sum_ref, scale_ref, qk_ref, pv_ref, qk_h_ref, pv_h_ref,
	qk_t_ref, softmax_t_ref, pv_t_ref, 0,
};

static const struct attn_ops *
attn_scalar_ops(void)
{
	return &ops_scalar;
}

/* Worst first; each entry's OPS returns NULL when the build or the CPU
 * lacks the tier. */
static const struct {
	const char *name;
	const struct attn_ops *(*ops)(void);
} tiers[] = {
	{ "scalar", attn_scalar_ops },
	{ "avx2", attn_avx2_ops },
	{ "avx512", attn_avx512_ops },
};
#define N_TIERS ((int)(sizeof(tiers) / sizeof(tiers[0])))

static const struct attn_ops *attn_cur;
static pthread_once_t attn_once = PTHREAD_ONCE_INIT;

/* The tier of the kernels' tier (cpu.c, NATTER_CPU included) or of the
 * nearest tier below it that attention has: avxvnni runs attention's
 * avx2, avx512vnni, avx512bf16 and amx its avx512. */
static void
attn_pick_best(void)
{
	attn_cur = &ops_scalar;
	for (int t = q_cpu_tier_chosen(); t >= 0; t--) {
		for (int i = N_TIERS - 1; i >= 0; i--) {
			const struct attn_ops *o;
			if (strcmp(tiers[i].name, q_cpu_tier_name(t)) || !(o = tiers[i].ops()))
				continue;
			attn_cur = o;
			return;
		}
	}
}

int
attn_tier_count(void)
{
	return N_TIERS;
}

const char *
attn_tier_name(int i)
{
	return i >= 0 && i < N_TIERS ? tiers[i].name : NULL;
}

int
attn_tier_available(int i)
{
	return i >= 0 && i < N_TIERS && tiers[i].ops() != NULL;
}

int
attn_tier_set(int i)
{
	pthread_once(&attn_once, attn_pick_best);
	if (i < 0) {
		attn_pick_best();
		return 0;
	}
	if (!attn_tier_available(i))
		return -1;
	attn_cur = tiers[i].ops();
	return 0;
}

const struct attn_ops *
attn_ops_get(void)
{
	pthread_once(&attn_once, attn_pick_best);
	return attn_cur;
}

/* --- rows of the cache --- */

int
attn_type_supported(enum ggml_type t)
{
	return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_Q8_0;
}

size_t
attn_row_bytes(enum ggml_type t, int n)
{
	switch (t) {
	case GGML_TYPE_F16:
		return (size_t)n * sizeof(qhalf);
	case GGML_TYPE_Q8_0:
		return (size_t)(n / QK8_0) * sizeof(block_q8_0);
	default:
		return (size_t)n * sizeof(float);
	}
}

void
attn_row_from_float(enum ggml_type t, const float *x, void *y, int n)
{
	switch (t) {
	case GGML_TYPE_F16:
		attn_ops_get()->f32_to_f16(x, y, n);
		break;
	case GGML_TYPE_Q8_0:
		q_traits_get(GGML_TYPE_Q8_0)->from_float(x, y, n);
		break;
	default:
		memcpy(y, x, (size_t)n * sizeof(float));
		break;
	}
}

/*
 * Asks for the cache lines of row R + ATTN_PREFETCH_ROWS of a block, into
 * L2.  A head's rows are a few hundred bytes out of each position's row of
 * all heads, so the hardware's stream prefetchers (which start over at
 * every 4 KiB page) see short streams and the conversion waited on
 * memory.  Measured on one thread (avx512bf16 machine, busy), converting
 * 4000 positions x 6 layers of two F16 heads of 256 (48 MB), one head at a
 * time: 4.0-6.1 GB/s without, 7.6-8.0 GB/s with 8 rows ahead into L2
 * (into L1: 5.4-7.3); whole rows read in order ran at 10 GB/s.
 */
#define ATTN_PREFETCH_ROWS 8

static inline void
prefetch_row(const uint8_t *src, size_t stride, int r, int rows, size_t bytes)
{
	if (r + ATTN_PREFETCH_ROWS < rows) {
		const uint8_t *p = src + (size_t)(r + ATTN_PREFETCH_ROWS) * stride;
		for (size_t b = 0; b < bytes; b += 64)
			__builtin_prefetch(p + b, 0, 2);   /* to L2: the block is read once */
	}
}

void
attn_rows_to_float(enum ggml_type t, const void *x, size_t stride, int rows, int n, float *y, int ldy)
{
	const uint8_t *src = x;
	const size_t bytes = attn_row_bytes(t, n);

	switch (t) {
	case GGML_TYPE_F16: {
		const struct attn_ops *o = attn_ops_get();
		for (int r = 0; r < rows; r++) {
			prefetch_row(src, stride, r, rows, bytes);
			o->f16_to_f32((const qhalf *)(src + (size_t)r * stride), y + (size_t)r * ldy, n);
		}
		break;
	}
	case GGML_TYPE_Q8_0: {
		q_to_float_fn f = q_traits_get(GGML_TYPE_Q8_0)->to_float_fast;
		for (int r = 0; r < rows; r++) {
			prefetch_row(src, stride, r, rows, bytes);
			f(src + (size_t)r * stride, y + (size_t)r * ldy, n);
		}
		break;
	}
	default:
		for (int r = 0; r < rows; r++)
			memcpy(y + (size_t)r * ldy, src + (size_t)r * stride, (size_t)n * sizeof(float));
		break;
	}
}

/* --- scratch --- */

/* Query tokens per task: ATTN_ROWS rows of GROUP heads each (at least one). */
static int
tokens_per_block(int group)
{
	return group >= ATTN_ROWS ? 1 : ATTN_ROWS / group;
}

int
attn_scratch_init(struct attn_scratch *s, const struct attn_shape *sh, int n_threads)
{
	const int group = sh->n_head_kv > 0 ? sh->n_head / sh->n_head_kv : 1;
	const int hd = sh->head_dim, hdv = sh->head_dim_v;

	/* Each of our threads calls sgemm on its own block: OpenBLAS must not
	 * start threads of its own on top of ours. */
	openblas_set_num_threads(1);
	memset(s, 0, sizeof(*s));
	if (n_threads < 1)
		n_threads = 1;
	s->n_threads = n_threads;
	s->rows = tokens_per_block(group) * group;
	s->bk = ATTN_BK;
	s->head_dim = hd;
	s->head_dim_v = hdv;
	s->bk_all = ATTN_ALL_FLOATS / (sh->n_head_kv * (hd > hdv ? hd : hdv)) / 16 * 16;
	if (s->bk_all < 16)
		s->bk_all = 16;
	if (s->bk_all > ATTN_BK)
		s->bk_all = ATTN_BK;
	s->kf_floats = (size_t)s->bk * hd;
	if (s->kf_floats < (size_t)s->bk_all * sh->n_head_kv * hd)
		s->kf_floats = (size_t)s->bk_all * sh->n_head_kv * hd;
	s->vf_floats = (size_t)s->bk * hdv;
	if (s->vf_floats < (size_t)s->bk_all * sh->n_head_kv * hdv)
		s->vf_floats = (size_t)s->bk_all * sh->n_head_kv * hdv;
	/* Queries and scores in either layout: rows x (hd, bk), or
	 * transposed (hd, bk) x ldr; the kernels of the transposed ones may
	 * run 15 columns past a row range (attn.h). */
	s->ldr = (s->rows + 16 + 15) / 16 * 16;
	/* q, o, scores, k, v, max, sum, alpha */
	s->per_thread = (size_t)s->ldr * hd + (size_t)s->rows * hdv + (size_t)s->ldr * s->bk + s->kf_floats +
	    s->vf_floats + 3 * (size_t)s->ldr;
	s->per_thread = (s->per_thread + 15) / 16 * 16;   /* each thread's on lines of its own */
	s->buf = line_calloc((size_t)n_threads * s->per_thread, sizeof(float));
	s->part_floats = (size_t)ATTN_SLOTS_PER_THREAD * n_threads * s->rows * (hdv + 2);
	s->part = line_calloc(s->part_floats, sizeof(float));
	if (!s->buf || !s->part) {
		attn_scratch_free(s);
		return -1;
	}
	return 0;
}

void
attn_scratch_free(struct attn_scratch *s)
{
	free(s->buf);
	free(s->part);
	memset(s, 0, sizeof(*s));
}

/* --- the kernel --- */

struct attn_job {
	struct pool *pool;
	const struct attn_shape *sh;
	const struct kv_layer *kl;
	struct attn_scratch *s;
	const struct attn_ops *ops;
	const float *q;
	float *out;
	int nt, pos0;
	int group, bq, nqb;     /* heads per KV head, tokens per query block, query blocks */
	int all_heads;          /* one query block, every KV head in each task */
	int bk;                 /* keys per block */
	int nsplit, ntask;      /* key ranges per (query block, KV head); tasks */
	int slot_rows;          /* rows of a part's slot: a query block's at most */
	size_t slot_floats;     /* a slot's floats, whole cache lines: the tasks
				 * writing two neighbouring slots share none */
	atomic_int next;        /* the next task to take */
	int merge_last;         /* the last task to end merges the parts */
	atomic_int done;        /* tasks ended (merge_last) */
};

/* The first key a query at P sees. */
static inline int
first_key(int p, int window)
{
	return window && p - window + 1 > 0 ? p - window + 1 : 0;
}

/*
 * K (IS_V 0) or V of the NKV KV heads from KVH on, for the NR runs RUN
 * (consecutive positions), as rows of NKV x N floats (head after head; a
 * head's part of a row starts N floats after the previous one's): a
 * pointer into the cache itself for F32 rows in one run (*LD their row
 * length), else converted (or copied) into BUF in position order (*LD =
 * NKV x N).  A block that a ring's wrap cuts in two is still one block, so
 * that a ring computes exactly what a full cache does.
 */
static const float *
block_floats(const struct kv_layer *kl, const struct kv_run *run, int nr, int is_v, int kvh, int nkv, int n,
	     float *buf, int *ld)
{
	const size_t row_bytes = is_v ? kl->row_v : kl->row_k, off = attn_row_bytes(kl->type, kvh * n);
	const int w = nkv * n;
	int at = 0;

	if (kl->type == GGML_TYPE_F32 && nr == 1) {
		*ld = (int)(row_bytes / sizeof(float));
		return (const float *)((is_v ? run[0].v : run[0].k) + off);
	}
	for (int r = 0; r < nr; r++) {
		attn_rows_to_float(kl->type, (is_v ? run[r].v : run[r].k) + off, row_bytes, run[r].n, w,
		    buf + (size_t)at * w, w);
		at += run[r].n;
	}
	*ld = w;
	return buf;
}

/* Task I: a query block, a KV head (or all of them: all_heads), a part
 * of their keys. */
/* Asks for the K (WHICH bit 0) and V (bit 1) rows of positions LO .. HI
 * into L2. */
static void
prefetch_block(const struct kv_layer *kl, int lo, int hi, int which)
{
	struct kv_run nx[2];
	const int nn = kv_layer_runs(kl, lo, hi, nx);
	for (int r = 0; r < nn; r++) {
		if (which & 1)
			for (size_t by = 0; by < (size_t)nx[r].n * kl->row_k; by += 64)
				__builtin_prefetch(nx[r].k + by, 0, 2);
		if (which & 2)
			for (size_t by = 0; by < (size_t)nx[r].n * kl->row_v; by += 64)
				__builtin_prefetch(nx[r].v + by, 0, 2);
	}
}

/*
 * What the kernels of a block ask memory for while they run (all_heads
 * tasks over F16 rows): the scores' part H of NKV asks for part H of the
 * block's values (rows of ROW_V from V, NK of them), P V's for part H of
 * the next block's keys.  PF and *PFL as attn_ops.qk_h takes them.
 */
static const uint8_t *
pf_part(const uint8_t *base, size_t row_bytes, int h, int nkv, int nk, int *pfl)
{
	*pfl = (int)((row_bytes / 64 + nkv - 1) / nkv);
	return base ? base + (size_t)h * nk * *pfl * 64 : NULL;
}

/* S (NA rows of LDS) = Q (NA rows of HD) K^T over KV head KVH's binary16
 * keys in the NRUN runs RUN, read from the cache itself; PF, PFL for the
 * first run. */
static void
qk_runs(const struct attn_ops *o, const struct kv_layer *kl, const struct kv_run *run, int nrun, int kvh,
	const float *q, int na, int hd, float *s, int lds, const uint8_t *pf, int pfl)
{
	const size_t off = attn_row_bytes(GGML_TYPE_F16, kvh * hd);
	for (int r = 0, at = 0; r < nrun; at += run[r].n, r++)
		o->qk_h(q, na, hd, (const qhalf *)(run[r].k + off), (int)(kl->row_k / sizeof(qhalf)), run[r].n, s + at, lds,
		    r ? NULL : pf, pfl);
}

/* O (NA rows of LDO) += P (NA rows of LDP) V over KV head KVH's binary16
 * values in the runs. */
static void
pv_runs(const struct attn_ops *o, const struct kv_layer *kl, const struct kv_run *run, int nrun, int kvh,
	const float *p, int ldp, int na, int hdv, float *out, int ldo, const uint8_t *pf, int pfl)
{
	const size_t off = attn_row_bytes(GGML_TYPE_F16, kvh * hdv);
	for (int r = 0, at = 0; r < nrun; at += run[r].n, r++)
		o->pv_h(p + at, ldp, na, (const qhalf *)(run[r].v + off), (int)(kl->row_v / sizeof(qhalf)), run[r].n, hdv,
		    out, ldo, r ? NULL : pf, pfl);
}

/*
 * The scores S^T (NK keys' rows, LDS apart, a column per query row RA ..
 * RB-1; ST points at row RA's) that their rows must not see become -inf,
 * the others soft-capped (CAP > 0).  Key j is the position of the task's
 * token U + j (U may be negative); a task's row r is its token r / GROUP's.
 */
static void
mask_t(float *st, int lds, int nk, int ra, int rb, int u, int group, int win, float cap)
{
	for (int jj = 0; jj < nk; jj++, u++) {
		float *row = st + (size_t)jj * lds - ra;   /* indexed by row */
		/* Rows from U's first see the key; up to the last within
		 * the window after it. */
		long lo = (long)u * group, hi = win ? ((long)u + win) * group : rb;
		if (lo < ra)
			lo = ra;
		if (hi > rb)
			hi = rb;
		if (hi < lo)
			hi = lo;
		if (cap > 0)
			for (long r = lo; r < hi; r++)
				row[r] = cap * tanhf(row[r] / cap);
		for (long r = ra; r < lo; r++)
			row[r] = -INFINITY;
		for (long r = hi; r < rb; r++)
			row[r] = -INFINITY;
	}
}

static void
attn_task(struct attn_job *j, int i, float *buf)
{
	const struct attn_shape *sh = j->sh;
	const struct kv_layer *kl = j->kl;
	const struct attn_ops *o = j->ops;
	const int hd = sh->head_dim, hdv = sh->head_dim_v, group = j->group, bk = j->bk, lds = j->s->bk;
	const int rows = j->s->rows, win = sh->window, pos0 = j->pos0;
	const int per_qb = j->all_heads ? j->nsplit : sh->n_head_kv * j->nsplit;
	const int qb = j->nqb - 1 - i / per_qb, split = i % j->nsplit;
	const int kv0 = j->all_heads ? 0 : (i % per_qb) / j->nsplit, nkv = j->all_heads ? sh->n_head_kv : 1;
	const int t0 = qb * j->bq, t1 = t0 + j->bq < j->nt ? t0 + j->bq : j->nt;
	const int nr = (t1 - t0) * group, NR = nr * nkv;   /* rows of a KV head; of the task */
	const size_t QW = (size_t)sh->n_head * hd, OW = (size_t)sh->n_head * hdv;
	const int ldr = j->s->ldr, tmode = o->t_tiles && nr >= ATTN_T_ROWS;
	float *qs = buf, *os = qs + (size_t)ldr * hd, *sc = os + (size_t)rows * hdv;
	float *kf = sc + (size_t)ldr * lds, *vf = kf + j->s->kf_floats, *mx = vf + j->s->vf_floats, *sum = mx + ldr;
	float *al = sum + ldr;
	int ks = first_key(pos0 + t0, win), ke = pos0 + t1 - 1;

	if (j->nsplit > 1) {
		const int n = ke - ks + 1;
		int chunk = (n + j->nsplit - 1) / j->nsplit;
		chunk = (chunk + bk - 1) / bk * bk;
		ks += split * chunk;
		if (ke > ks + chunk - 1)
			ke = ks + chunk - 1;
	}
	/* The queries, scaled, rows (KV head of the task, token, head of the
	 * group). */
	for (int R = 0; R < NR; R++) {
		const int h = R / nr, r = R % nr;
		const float *src = j->q + (size_t)(t0 + r / group) * QW + (size_t)((kv0 + h) * group + r % group) * hd;
		if (tmode)   /* column R */
			for (int d = 0; d < hd; d++)
				qs[(size_t)d * ldr + R] = src[d] * sh->scale;
		else
			o->scale(qs + (size_t)R * hd, src, hd, sh->scale);
		mx[R] = -INFINITY;
		sum[R] = 0;
	}
	memset(os, 0, (size_t)NR * hdv * sizeof(float));

	for (int b0 = ks; b0 <= ke;) {
		struct kv_run run[2];
		const int b1 = b0 + bk - 1 < ke ? b0 + bk - 1 : ke, nk = b1 - b0 + 1;
		const int nrun = kv_layer_runs(kl, b0, b1, run);
		int ldk, ldv;
		/* Tokens that see a key of [b0, b1]: p >= b0, first_key(p) <= b1. */
		int ta = b0 - pos0 > t0 ? b0 - pos0 : t0, tb = t1 - 1;
		if (win && b1 + win - 1 - pos0 < tb)
			tb = b1 + win - 1 - pos0;
		if (ta > tb) {
			b0 = b1 + 1;
			continue;
		}
		const int ra = (ta - t0) * group, rb = (tb - t0 + 1) * group, na = rb - ra;
		if (tmode) {
			const float *kp = block_floats(kl, run, nrun, 0, kv0, nkv, hd, kf, &ldk), *vp;
			if (j->all_heads)
				prefetch_block(kl, b0, b1, 2);
			/* Head after head: the kernels' writes past a head's
			 * columns land on the next heads', not yet computed. */
			for (int h = 0; h < nkv; h++) {
				const int C = h * nr + ra;
				o->qk_t(qs + C, ldr, na, hd, kp + (size_t)h * hd, ldk, nk, sc + C, ldr);
				mask_t(sc + C, ldr, nk, ra, rb, b0 - pos0 - t0, group, win, sh->softcap);
				o->softmax_t(sc + C, ldr, nk, na, mx + C, sum + C, al + C);
			}
			if (j->all_heads && b1 < ke)
				prefetch_block(kl, b1 + 1, b1 + bk < ke ? b1 + bk : ke, 1);
			vp = block_floats(kl, run, nrun, 1, kv0, nkv, hdv, vf, &ldv);
			for (int h = 0; h < nkv; h++) {
				const int C = h * nr + ra;
				o->pv_t(sc + C, ldr, na, vp + (size_t)h * hdv, ldv, nk, hdv, al + C, os + (size_t)C * hdv, hdv);
			}
			b0 = b1 + 1;
			continue;
		}
		const int wide = na >= ATTN_SGEMM_ROWS;
		const int fused = kl->type == GGML_TYPE_F16 && na <= ATTN_FUSED_ROWS;
		const float *kp = fused ? NULL : block_floats(kl, run, nrun, 0, kv0, nkv, hd, kf, &ldk), *vp = NULL;
		/* Whole rows: while the scores are computed, memory brings the
		 * block's values; while they are added, the next keys (a few
		 * lines at each key, by the fused kernels; else all at once). */
		struct kv_run nx[2] = { { NULL, NULL, 0 }, { NULL, NULL, 0 } };
		if (j->all_heads && b1 < ke)
			kv_layer_runs(kl, b1 + 1, b1 + bk < ke ? b1 + bk : ke, nx);
		if (j->all_heads && !fused)
			prefetch_block(kl, b0, b1, 2);
		for (int h = 0; h < nkv; h++) {
			const int H = h * nr;
			/* Scores of the whole block; what a row must not see is
			 * zeroed after the softmax, so that P V can take whole
			 * rows. */
			if (fused) {
				int pfl;
				const uint8_t *pf = pf_part(j->all_heads ? run[0].v : NULL, kl->row_v, h, nkv, run[0].n, &pfl);
				qk_runs(o, kl, run, nrun, kv0 + h, qs + (size_t)(H + ra) * hd, na, hd, sc + (size_t)(H + ra) * lds,
				    lds, pf, pfl);
			}
			else if (wide)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, na, nk, hd, 1.0f, qs + (size_t)(H + ra) * hd,
				    hd, kp + (size_t)h * hd, ldk, 0.0f, sc + (size_t)(H + ra) * lds, lds);
			else
				o->qk(qs + (size_t)(H + ra) * hd, na, hd, kp + (size_t)h * hd, ldk, nk, sc + (size_t)(H + ra) * lds,
				    lds);
			for (int r = ra; r < rb; r++) {
				const int p = pos0 + t0 + r / group, lo = first_key(p, win), R = H + r;
				const int a = (lo > b0 ? lo : b0) - b0, b = (p < b1 ? p : b1) - b0;
				float *row = sc + (size_t)R * lds, m, alpha;
				if (a > b) {
					memset(row, 0, (size_t)nk * sizeof(float));
					continue;
				}
				if (sh->softcap > 0)
					for (int k = a; k <= b; k++)
						row[k] = sh->softcap * tanhf(row[k] / sh->softcap);
				m = o->max(row + a, b - a + 1);
				if (mx[R] > m)
					m = mx[R];
				alpha = expf(mx[R] - m);   /* 0 for the first block the row sees */
				sum[R] = sum[R] * alpha + o->exp_sum(row + a, b - a + 1, m);
				mx[R] = m;
				if (alpha != 1.0f)
					o->scale(os + (size_t)R * hdv, os + (size_t)R * hdv, hdv, alpha);
				memset(row, 0, (size_t)a * sizeof(float));
				memset(row + b + 1, 0, (size_t)(nk - b - 1) * sizeof(float));
			}
		}
		if (j->all_heads && !fused && b1 < ke)
			prefetch_block(kl, b1 + 1, b1 + bk < ke ? b1 + bk : ke, 1);
		if (!fused)
			vp = block_floats(kl, run, nrun, 1, kv0, nkv, hdv, vf, &ldv);
		for (int h = 0; h < nkv; h++) {
			const int H = h * nr;
			if (fused) {
				int pfl;
				const uint8_t *pf = pf_part(nx[0].k, kl->row_k, h, nkv, run[0].n, &pfl);
				pv_runs(o, kl, run, nrun, kv0 + h, sc + (size_t)(H + ra) * lds, lds, na, hdv,
				    os + (size_t)(H + ra) * hdv, hdv, pf, pfl);
			}
			else if (wide)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, na, hdv, nk, 1.0f, sc + (size_t)(H + ra) * lds,
				    lds, vp + (size_t)h * hdv, ldv, 1.0f, os + (size_t)(H + ra) * hdv, hdv);
			else
				o->pv(sc + (size_t)(H + ra) * lds, lds, na, vp + (size_t)h * hdv, ldv, nk, hdv,
				    os + (size_t)(H + ra) * hdv, hdv);
		}
		b0 = b1 + 1;
	}

	for (int R = 0; R < NR; R++) {
		const int h = R / nr, r = R % nr, kvh = kv0 + h;
		if (j->nsplit == 1) {
			float *dst = j->out + (size_t)(t0 + r / group) * OW + (size_t)(kvh * group + r % group) * hdv;
			const float inv = sum[R] > 0 ? 1.0f / sum[R] : 0.0f;
			for (int d = 0; d < hdv; d++)
				dst[d] = os[(size_t)R * hdv + d] * inv;
		} else {
			/* Unnormalised, with its max and sum: the merge weighs
			 * the parts.  The slot of (query block, KV head, split),
			 * as attn_merge reads them. */
			const int u = (j->nqb - 1 - qb) * sh->n_head_kv + kvh;
			float *e = j->s->part + ((size_t)u * j->nsplit + split) * j->slot_floats +
			    (size_t)r * (hdv + 2);
			memcpy(e, os + (size_t)R * hdv, (size_t)hdv * sizeof(float));
			e[hdv] = mx[R];
			e[hdv + 1] = sum[R];
		}
	}
}

/* Parts weighed at a time by attn_merge. */
#define MERGE_PARTS 32

/* The parts of each (query block, KV head) into OUT: softmax over the
 * union of their keys, from each part's max, sum and accumulator.  A
 * row's output is its parts' accumulators weighed by e^(max - the
 * largest max): a row of P times the parts as rows of V (the tier's pv),
 * then scaled by the sum. */
static void
attn_merge(void *arg, int ith, int nth)
{
	struct attn_job *j = arg;
	const struct attn_shape *sh = j->sh;
	const struct attn_ops *o = j->ops;
	const int hdv = sh->head_dim_v, group = j->group;
	const size_t OW = (size_t)sh->n_head * hdv, slot_floats = j->slot_floats;
	float w[MERGE_PARTS];

	for (int u = ith; u < j->nqb * sh->n_head_kv; u += nth) {
		const int first = u * j->nsplit, qb = j->nqb - 1 - u / sh->n_head_kv, kvh = u % sh->n_head_kv;
		const int t0 = qb * j->bq, t1 = t0 + j->bq < j->nt ? t0 + j->bq : j->nt;
		for (int r = 0; r < (t1 - t0) * group; r++) {
			float *dst = j->out + (size_t)(t0 + r / group) * OW + (size_t)(kvh * group + r % group) * hdv;
			const float *e0 = j->s->part + first * slot_floats + (size_t)r * (hdv + 2);
			float m = -INFINITY, l = 0;
			for (int sp = 0; sp < j->nsplit; sp++) {
				const float *e = e0 + sp * slot_floats;
				if (e[hdv] > m)
					m = e[hdv];
			}
			memset(dst, 0, (size_t)hdv * sizeof(float));
			for (int s0 = 0; s0 < j->nsplit; s0 += MERGE_PARTS) {
				const int n = j->nsplit - s0 < MERGE_PARTS ? j->nsplit - s0 : MERGE_PARTS;
				for (int sp = 0; sp < n; sp++) {
					const float *e = e0 + (s0 + sp) * slot_floats;
					/* A part with no key this row sees: nothing (its
					 * accumulator is zeros, its max -inf). */
					w[sp] = e[hdv + 1] > 0 ? expf(e[hdv] - m) : 0.0f;
					l += e[hdv + 1] * w[sp];
				}
				o->pv(w, MERGE_PARTS, 1, e0 + s0 * slot_floats, (int)slot_floats, n, hdv, dst, hdv);
			}
			o->scale(dst, dst, hdv, l > 0 ? 1.0f / l : 0.0f);
		}
	}
}

static void
attn_worker(void *arg, int ith, int nth)
{
	struct attn_job *j = arg;
	float *buf;
	int i;

	(void)nth;
	if (ith >= j->s->n_threads)
		return;   /* no scratch of its own: the others take its share */
	buf = j->s->buf + (size_t)ith * j->s->per_thread;
	/* A stop (Esc on a long prompt) ends the job between tasks; the
	 * caller then throws its output away (pool_stopped). */
	while (!pool_poll(j->pool) && (i = atomic_fetch_add(&j->next, 1)) < j->ntask) {
		attn_task(j, i, buf);
		if (j->merge_last && atomic_fetch_add(&j->done, 1) + 1 == j->ntask)
			attn_merge(j, 0, 1);
	}
}

static atomic_ulong split_calls;

unsigned long
attn_split_calls(void)
{
	return atomic_load_explicit(&split_calls, memory_order_relaxed);
}

void
attn_forward(struct pool *p, struct attn_scratch *s, const struct attn_shape *sh, const struct kv_layer *kl,
	     const float *q, int nt, int pos0, float *out)
{
	struct attn_job j;
	int base, nth = pool_size(p);

	if (nt <= 0)
		return;
	memset(&j, 0, sizeof(j));
	j.pool = p;
	j.sh = sh;
	j.kl = kl;
	j.s = s;
	j.ops = attn_ops_get();
	j.q = q;
	j.out = out;
	j.nt = nt;
	j.pos0 = pos0;
	j.group = sh->n_head / sh->n_head_kv;
	j.bq = s->rows / j.group;
	j.nqb = (nt + j.bq - 1) / j.bq;
	j.slot_rows = (nt < j.bq ? nt : j.bq) * j.group;
	j.slot_floats = ((size_t)j.slot_rows * (sh->head_dim_v + 2) + 15) / 16 * 16;
	/* A few queries (every head of them fits a task): each task takes
	 * all the KV heads of a part of the keys. */
	j.all_heads = nt * sh->n_head <= s->rows && sh->n_head_kv > 1;
	j.bk = j.all_heads ? s->bk_all : s->bk;
	base = j.all_heads ? 1 : j.nqb * sh->n_head_kv;
	j.nsplit = 1;
	if (nth > s->n_threads)
		nth = s->n_threads;
	if (base < 2 * nth) {
		/* Few tasks: split the longest key range into parts of at
		 * least a block, about four tasks per thread in all; one per
		 * thread where each task takes every KV head (a generated
		 * token's attention), since such a task asks for each
		 * block's keys and values while it works on the one before,
		 * and only its first block waits on memory.  Measured
		 * (Qwen3-0.6B Q4_0, F16 cache, avx512bf16, 2 threads, tokens
		 * alternating between the two in one run, both ways round):
		 * the attention's time a token after 256 tokens of context
		 * 0.73-0.75 of four tasks a thread's, after 1024 0.81-0.83;
		 * the token's 0.94-0.98 and 0.93-0.95; level from an empty
		 * context. */
		const int last = pos0 + nt - 1, keys = last - first_key(pos0 + (j.nqb - 1) * j.bq, sh->window) + 1;
		int ns = ((j.all_heads ? 1 : 4) * nth + base - 1) / base;
		if (ns > keys / j.bk)
			ns = keys / j.bk;
		/* The parts' room: PART, in slots of the rows a query block
		 * has (a token's heads: a few), each on lines of its own. */
		const size_t slots = s->part_floats / j.slot_floats;
		if ((size_t)ns > slots / ((size_t)j.nqb * sh->n_head_kv))
			ns = (int)(slots / ((size_t)j.nqb * sh->n_head_kv));
		if (ns > 1)
			j.nsplit = ns;
	}
	j.ntask = base * j.nsplit;
	if (j.nsplit > 1)
		atomic_fetch_add_explicit(&split_calls, 1, memory_order_relaxed);
	atomic_init(&j.next, 0);
	/* A generated token's parts (a few rows each) are merged by the
	 * thread that ends the last of them, not in a job of their own;
	 * a prompt's, many rows, by every thread. */
	j.merge_last = j.nsplit > 1 && j.all_heads;
	atomic_init(&j.done, 0);
	/* One task (a generated token at a short context): on this thread,
	 * the workers left to read ahead the next product's weights. */
	if (j.ntask == 1)
		attn_worker(&j, 0, 1);
	else
		pool_run(p, attn_worker, &j);
	if (j.nsplit > 1 && !j.merge_last && !pool_stopped(p))
		pool_run(p, attn_merge, &j);
}
