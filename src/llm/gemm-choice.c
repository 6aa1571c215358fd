/* gemm-choice.c -- float weights' batches through natter's tiles or OpenBLAS's sgemm, whichever measures faster here; timed once per type. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "natter/quant.h"
#include "llm/quant-impl.h"

/*
 * The product timed: GC_ROWS rows of GC_IN inputs by GC_TOKENS tokens
 * (34 MFLOP, a fraction of a millisecond at the peaks of these machines),
 * each way GC_REPS times by turns, the best of each kept.  OpenBLAS must
 * take less than GC_MARGIN of the tiles' time to be chosen: the tiles do
 * not depend on what OpenBLAS makes of the CPU.
 */
#define GC_ROWS 128
#define GC_IN 1024
#define GC_TOKENS 128
#define GC_REPS 5
#define GC_MARGIN 0.95

static pthread_mutex_t gc_lock = PTHREAD_MUTEX_INITIALIZER;
static int gc_env_read;
static enum q_float_gemm gc_forced = Q_FLOAT_GEMM_AUTO;
static char gc_env_err[96];
static signed char gc_pick[GGML_TYPE_COUNT];    /* 0: not measured yet; else 1 + choice */
static double gc_ms[GGML_TYPE_COUNT][2];

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

/* Times both ways for T into gc_ms[T]; returns the faster, TILES when
 * anything is missing (memory, a kernel). */
static enum q_float_gemm
measure(enum ggml_type t)
{
	const struct q_kernels *k = q_kern();
	const struct q_type_kern *tk = &k->t[t];
	const struct q_traits *qt = q_traits_get(t);
	const size_t rb = q_row_size(t, GC_IN);
	uint8_t *w = malloc(rb * GC_ROWS);
	float *x = malloc((size_t)GC_TOKENS * GC_IN * sizeof(float)), *out = malloc((size_t)GC_TOKENS * GC_ROWS * sizeof(float));
	float *panel = malloc((size_t)GC_ROWS * GC_IN * sizeof(float)), *row = malloc(GC_IN * sizeof(float));
	void *scratch = k->gemm_scratch ? aligned_alloc(64, (k->gemm_scratch(GC_IN) + 63) & ~(size_t)63) : NULL;
	enum q_float_gemm pick = Q_FLOAT_GEMM_TILES;
	double best[2] = { 1e30, 1e30 };
	unsigned seed = 12345;

	if (!w || !x || !out || !panel || !row || !scratch || !qt || !qt->from_float ||
	    (t != GGML_TYPE_F32 && !tk->to_float))
		goto out;
	for (int r = 0; r < GC_ROWS; r++) {
		for (int i = 0; i < GC_IN; i++)
			row[i] = (float)((seed = seed * 1103515245u + 12345u) >> 8) / (1u << 24) - 0.5f;
		qt->from_float(row, w + (size_t)r * rb, GC_IN);
	}
	for (size_t i = 0; i < (size_t)GC_TOKENS * GC_IN; i++)
		x[i] = (float)((seed = seed * 1103515245u + 12345u) >> 8) / (1u << 24) - 0.5f;
	for (int rep = 0; rep < GC_REPS; rep++) {
		for (int way = 0; way < 2; way++) {
			const double t0 = now_ms();
			if (way == Q_FLOAT_GEMM_TILES) {
				struct q_gemm_args a = { t, w, rb, GC_IN, (const uint8_t *)x, GC_IN * sizeof(float), GC_TOKENS, out,
				    GC_ROWS, 0 };
				tk->gemm(&a, 0, GC_ROWS, scratch);
			} else {
				/* as matmul.c's blas_worker does it */
				const float *wf = (const float *)w;
				if (t != GGML_TYPE_F32) {
					for (int r = 0; r < GC_ROWS; r++)
						tk->to_float(w + (size_t)r * rb, panel + (size_t)r * GC_IN, GC_IN);
					wf = panel;
				}
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, GC_TOKENS, GC_ROWS, GC_IN, 1.0f, x, GC_IN, wf,
				    GC_IN, 0.0f, out, GC_ROWS);
			}
			const double dt = now_ms() - t0;
			if (dt < best[way])
				best[way] = dt;
		}
	}
	gc_ms[t][0] = best[0];
	gc_ms[t][1] = best[1];
	if (best[1] < GC_MARGIN * best[0])
		pick = Q_FLOAT_GEMM_OPENBLAS;
out:
	free(w);
	free(x);
	free(out);
	free(panel);
	free(row);
	free(scratch);
	return pick;
}

enum q_float_gemm
q_float_gemm_choice(enum ggml_type t, double ms[2])
{
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
		if (!gc_pick[t])
			gc_pick[t] = (signed char)(1 + measure(t));
		g = (enum q_float_gemm)(gc_pick[t] - 1);
		if (ms) {
			ms[0] = gc_ms[t][0];
			ms[1] = gc_ms[t][1];
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
