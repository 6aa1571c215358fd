/* gemm-choice.c -- float weights' batches through natter's tiles or OpenBLAS's sgemm, whichever measures faster here; timed once per type. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "natter/quant.h"
#include "natter/sysbench.h"
#include "llm/hugemem.h"
#include "llm/matmul.h"
#include "llm/quant-impl.h"

/*
 * The product timed, on each of the threads measure() starts, as each of
 * matmul.c's threads does its part: GC_ROWS rows of GC_IN inputs by the
 * tokens of the batch's class (below), the rows as many as one sgemm call
 * of blas_worker takes (its panel of MM_PANEL_BYTES), or in the tasks
 * gemm_run makes of them for the tiles (mm_gemm_f_rows); each way GC_REPS
 * times by turns, the best of each kept; both on the rows as a model
 * has them after its load: packed where the tier packs the type
 * (q_float_gemm_packs), for OpenBLAS converted out of their groups as
 * blas_worker does (mm_float_rows).  OpenBLAS must take less than
 * GC_MARGIN of the tiles' time to be chosen: the tiles do not depend on
 * what OpenBLAS makes of the CPU.
 *
 * Two classes of batches, each timed on first use: below
 * Q_FLOAT_GEMM_SPLIT tokens on 128 (134 MFLOP, a few milliseconds), from
 * it on 512.  On an AVX2-only Zen 3 the two ways tied on 128 tokens
 * (tiles 2.1-2.5 ms, OpenBLAS 2.1-2.7) while on 512 OpenBLAS took
 * 0.79-0.91 of the tiles' time, and Qwen2.5-0.5B F16 prompts ran alike:
 * pp128 tiles 163 t/s, OpenBLAS 157; pp512 136 and 152.
 */
#define GC_IN 1024
#define GC_ROWS ((int)(MM_PANEL_BYTES / (GC_IN * sizeof(float))))
static const int gc_tokens[2] = { 128, 512 };
#define GC_REPS 5
#define GC_MARGIN 0.95
#define GC_THREADS 16

static pthread_mutex_t gc_lock = PTHREAD_MUTEX_INITIALIZER;
static int gc_env_read;
static enum q_float_gemm gc_forced = Q_FLOAT_GEMM_AUTO;
static char gc_env_err[96];
static signed char gc_pick[GGML_TYPE_COUNT][2];    /* per class; 0: not measured yet; else 1 + choice */
static double gc_ms[GGML_TYPE_COUNT][2][2];

static double
now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

/* NATTER_FLOAT_GEMM, once (under gc_lock). */
static void
env_read(void)
{
	const char *e = getenv("NATTER_FLOAT_GEMM");

	if (gc_env_read)
		return;
	gc_env_read = 1;
	if (!e || !*e || strcmp(e, "auto") == 0)
		return;
	if (strcmp(e, "tiles") == 0)
		gc_forced = Q_FLOAT_GEMM_TILES;
	else if (strcmp(e, "openblas") == 0)
		gc_forced = Q_FLOAT_GEMM_OPENBLAS;
	else
		snprintf(gc_env_err, sizeof(gc_env_err), "NATTER_FLOAT_GEMM=%.40s is none of tiles, openblas, auto", e);
}

int
q_float_gemm_init(char *err, size_t errlen)
{
	int rc;

	pthread_mutex_lock(&gc_lock);
	env_read();
	rc = gc_env_err[0] ? -1 : 0;
	if (rc < 0 && err && errlen)
		snprintf(err, errlen, "%s", gc_env_err);
	pthread_mutex_unlock(&gc_lock);
	return rc;
}

void
q_float_gemm_set(enum q_float_gemm g)
{
	pthread_mutex_lock(&gc_lock);
	env_read();
	gc_forced = g;
	pthread_mutex_unlock(&gc_lock);
}

/* One thread's share of the timing: its own weights and output, the
 * activations shared, as matmul.c's threads have them. */
struct gc_worker {
	pthread_t tid;
	enum ggml_type t;
	int way, nth, nt;
	const float *x;
	uint8_t *w, *wp;        /* the rows, and packed (NULL: the tier does not pack T) */
	float *out, *panel;
	void *scratch;
	double ms;
};

static double
lcg_unit(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (double)(*seed >> 8) / (1u << 24) - 0.5;
}

/* W: GC_ROWS random rows of type T; the buffers of one of NTH workers
 * timing products by NT tokens of X.  -1: out of memory or no conversion
 * for T. */
static int
gc_worker_init(struct gc_worker *g, enum ggml_type t, int nth, int nt, const float *x, unsigned seed)
{
	const struct q_kernels *k = q_kern();
	const struct q_traits *qt = q_traits_get(t);
	const size_t rb = q_row_size(t, GC_IN);
	const int pack = q_float_gemm_packs(t);
	float row[GC_IN];

	memset(g, 0, sizeof(*g));
	g->t = t;
	g->nth = nth;
	g->nt = nt;
	g->x = x;
	g->w = malloc(rb * GC_ROWS);
	g->wp = pack ? malloc(rb * GC_ROWS) : NULL;
	g->out = malloc((size_t)nt * GC_ROWS * sizeof(float));
	g->panel = malloc((size_t)GC_ROWS * GC_IN * sizeof(float));
	g->scratch = k->gemm_scratch ? aligned_alloc(64, line_bytes(k->gemm_scratch(GC_IN))) : NULL;
	if (!g->w || !g->out || !g->panel || !g->scratch || !qt || !qt->from_float ||
	    (t != GGML_TYPE_F32 && !k->t[t].to_float) || (pack && !g->wp))
		return -1;
	for (int r = 0; r < GC_ROWS; r++) {
		for (int i = 0; i < GC_IN; i++)
			row[i] = (float)lcg_unit(&seed);
		qt->from_float(row, g->w + (size_t)r * rb, GC_IN);
	}
	if (pack) {
		/* The panel's room, unused until OpenBLAS's turn. */
		memcpy(g->wp, g->w, rb * GC_ROWS);
		q_pack_matrix(t, g->wp, GC_ROWS, rb, k->pack_rows, g->panel);
	}
	return 0;
}

static void
gc_worker_free(struct gc_worker *g)
{
	free(g->w);
	free(g->wp);
	free(g->out);
	free(g->panel);
	free(g->scratch);
}

/* One product G->way, timed into G->ms. */
static void *
gc_run(void *arg)
{
	struct gc_worker *g = arg;
	const struct q_kernels *k = q_kern();
	const struct q_type_kern *tk = &k->t[g->t];
	const size_t rb = q_row_size(g->t, GC_IN);
	const double t0 = now_ms();

	if (g->way == Q_FLOAT_GEMM_TILES) {
		struct q_gemm_args a = { g->t, g->wp ? g->wp : g->w, rb, GC_IN, (const uint8_t *)g->x,
		    GC_IN * sizeof(float), g->nt, g->out, GC_ROWS, g->wp ? k->pack_rows : 0 };
		const int step = mm_gemm_f_rows(GC_ROWS * g->nth, g->nth, k->gemm_rows, g->wp != NULL);
		for (int r = 0; r < GC_ROWS; r += step)
			tk->gemm(&a, r, r + step < GC_ROWS ? r + step : GC_ROWS, g->scratch);
	} else {
		/* as matmul.c's blas_worker does it, on the rows as the model
		 * has them (packed half floats out of their groups) */
		const struct ltensor lt = { g->wp ? g->wp : g->w, g->t, GC_IN, GC_ROWS, 1, rb, rb * GC_ROWS,
		    g->wp ? k->pack_rows : 0 };
		const float *wf = (const float *)g->w;
		if (g->t != GGML_TYPE_F32 || g->wp) {
			mm_float_rows(&lt, 0, GC_ROWS, g->panel);
			wf = g->panel;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->nt, GC_ROWS, GC_IN, 1.0f, g->x, GC_IN, wf,
		    GC_IN, 0.0f, g->out, GC_ROWS);
	}
	g->ms = now_ms() - t0;
	return NULL;
}

/* Times both ways for T on class CLS's tokens into gc_ms[T][CLS], on as
 * many threads at once as a model runs by default (one per physical core,
 * at most GC_THREADS), since they share the caches and the memory as a
 * model's threads do.  Returns the faster, TILES when anything is missing
 * (memory, a kernel, a thread). */
static enum q_float_gemm
measure(enum ggml_type t, int cls)
{
	struct gc_worker g[GC_THREADS];
	float *x = malloc((size_t)gc_tokens[cls] * GC_IN * sizeof(float));
	enum q_float_gemm pick = Q_FLOAT_GEMM_TILES;
	double best[2] = { 1e30, 1e30 };
	unsigned seed = 12345;
	int nth = sysbench_physical_cores(), ok = x != NULL;

	nth = nth < 1 ? 1 : nth > GC_THREADS ? GC_THREADS : nth;
	for (int i = 0; i < nth; i++)
		if (gc_worker_init(&g[i], t, nth, gc_tokens[cls], x, seed + 7919u * (unsigned)i) < 0)
			ok = 0;
	if (!ok)
		goto out;
	for (size_t i = 0; i < (size_t)gc_tokens[cls] * GC_IN; i++)
		x[i] = (float)lcg_unit(&seed);
	/* single-threaded inside each of our threads, as matmul.c and attn.c
	 * keep it (natter info measures before any model set it) */
	openblas_set_num_threads(1);
	for (int rep = 0; rep < GC_REPS && ok; rep++) {
		for (int way = 0; way < 2 && ok; way++) {
			double worst = 0;
			int started = 1;
			for (int i = 0; i < nth; i++)
				g[i].way = way;
			for (int i = 1; i < nth; i++, started++)
				if (pthread_create(&g[i].tid, NULL, gc_run, &g[i]) != 0) {
					ok = 0;
					break;
				}
			gc_run(&g[0]);
			for (int i = 1; i < started; i++)
				pthread_join(g[i].tid, NULL);
			for (int i = 0; i < nth; i++)
				worst = g[i].ms > worst ? g[i].ms : worst;
			if (worst < best[way])
				best[way] = worst;
		}
	}
	if (!ok)
		goto out;
	gc_ms[t][cls][0] = best[0];
	gc_ms[t][cls][1] = best[1];
	if (best[1] < GC_MARGIN * best[0])
		pick = Q_FLOAT_GEMM_OPENBLAS;
out:
	for (int i = 0; i < nth; i++)
		gc_worker_free(&g[i]);
	free(x);
	return pick;
}

int
q_float_gemm_packs(enum ggml_type t)
{
	return (unsigned)t < GGML_TYPE_COUNT && q_packs(q_kern(), t, q_row_size(t, GC_IN));
}

enum q_float_gemm
q_float_gemm_choice(enum ggml_type t, int nt, double ms[2])
{
	const int cls = nt >= Q_FLOAT_GEMM_SPLIT;
	const struct q_type_kern *tk;
	enum q_float_gemm g;

	if (ms)
		ms[0] = ms[1] = 0;
	if ((unsigned)t >= GGML_TYPE_COUNT)
		return Q_FLOAT_GEMM_TILES;
	tk = &q_kern()->t[t];
	if (!tk->gemm || tk->gemm_act != Q_ACT_F32)
		return tk->gemm ? Q_FLOAT_GEMM_TILES : Q_FLOAT_GEMM_OPENBLAS;   /* only one way */
	pthread_mutex_lock(&gc_lock);
	env_read();
	if (gc_forced != Q_FLOAT_GEMM_AUTO) {
		g = gc_forced;
	} else {
		if (!gc_pick[t][cls])
			gc_pick[t][cls] = (signed char)(1 + measure(t, cls));
		g = (enum q_float_gemm)(gc_pick[t][cls] - 1);
		if (ms) {
			ms[0] = gc_ms[t][cls][0];
			ms[1] = gc_ms[t][cls][1];
		}
	}
	pthread_mutex_unlock(&gc_lock);
	return g;
}

const char *
q_float_gemm_name(enum q_float_gemm g)
{
	return g == Q_FLOAT_GEMM_OPENBLAS ? "openblas" : g == Q_FLOAT_GEMM_TILES ? "tiles" : "auto";
}
