/* matmul.c -- batched matrix products: activations converted once, weight rows split across threads. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "natter/quant.h"
#include "llm/matmul.h"
#include "llm/pool.h"

int
mm_scratch_init(struct mm_scratch *s, int n_batch, size_t max_in, int n_threads)
{
	static int blas_single;

	/* Each of our threads calls sgemm on its own panel: OpenBLAS must not
	 * start threads of its own on top of ours. */
	if (!blas_single) {
		openblas_set_num_threads(1);
		blas_single = 1;
	}
	memset(s, 0, sizeof(*s));
	/* Activations converted for the dot path (at most 4 bytes per element;
	 * only batches below the BLAS threshold use it). */
	s->cap = (size_t)(n_batch < MM_BLAS_MIN_BATCH ? n_batch : MM_BLAS_MIN_BATCH) * max_in * 4 + 64;
	s->xq = malloc(s->cap);
	if (!s->xq)
		return -1;
	if (n_batch >= MM_BLAS_MIN_BATCH) {
		size_t bytes = MM_PANEL_BYTES;
		if (bytes < max_in * 16 * sizeof(float))
			bytes = max_in * 16 * sizeof(float);   /* at least 16 rows */
		s->panel = calloc(n_threads, sizeof(*s->panel));
		if (!s->panel)
			return -1;
		s->n_panels = n_threads;
		for (int i = 0; i < n_threads; i++) {
			s->panel[i] = malloc(bytes);
			if (!s->panel[i])
				return -1;
		}
		s->panel_bytes = bytes;
	}
	return 0;
}

void
mm_scratch_free(struct mm_scratch *s)
{
	free(s->xq);
	for (int i = 0; i < s->n_panels; i++)
		free(s->panel[i]);
	free(s->panel);
	memset(s, 0, sizeof(*s));
}

struct mm_job {
	float *out;
	int d, n, nt;
	const uint8_t *xq;
	size_t qrow;
	const struct ltensor *w;
	q_vec_dot_fn dot;
};

static void
mm_worker(void *arg, int ith, int nth)
{
	const struct mm_job *j = arg;
	/* Contiguous row ranges, so each thread streams its own part of W. */
	int r0 = (int)((int64_t)j->d * ith / nth), r1 = (int)((int64_t)j->d * (ith + 1) / nth);
	const uint8_t *wbase = j->w->data;

	for (int r = r0; r < r1; r++) {
		const uint8_t *wrow = wbase + (size_t)r * j->w->row_bytes;
		for (int t = 0; t < j->nt; t++)
			j->dot(j->n, &j->out[(size_t)t * j->d + r], wrow, j->xq + (size_t)t * j->qrow);
	}
}

struct blas_job {
	float *out;
	int d, n, nt;
	const float *x;
	const struct ltensor *w;
	q_to_float_fn to_float;
	struct mm_scratch *s;
};

/* Each thread: dequantize a panel of its rows, multiply it with sgemm. */
static void
blas_worker(void *arg, int ith, int nth)
{
	const struct blas_job *j = arg;
	int r0 = (int)((int64_t)j->d * ith / nth), r1 = (int)((int64_t)j->d * (ith + 1) / nth);
	int per = (int)(j->s->panel_bytes / ((size_t)j->n * sizeof(float)));
	float *panel = j->s->panel[ith];
	const uint8_t *wbase = j->w->data;

	for (int r = r0; r < r1; r += per) {
		int rows = r1 - r < per ? r1 - r : per;
		const float *wf;
		if (j->w->type == GGML_TYPE_F32) {
			wf = (const float *)(wbase + (size_t)r * j->w->row_bytes);
		} else {
			for (int k = 0; k < rows; k++)
				j->to_float(wbase + (size_t)(r + k) * j->w->row_bytes, panel + (size_t)k * j->n, j->n);
			wf = panel;
		}
		/* out[t][r + k] = sum_i x[t][i] * wf[k][i] */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->nt, rows, j->n, 1.0f,
		    j->x, j->n, wf, j->n, 0.0f, j->out + r, j->d);
	}
}

void
mm_matmul(struct pool *p, struct mm_scratch *s, float *out, int d, const float *x, int n,
	  const struct ltensor *w, int nt)
{
	const struct q_traits *qt = q_traits_get(w->type);
	const struct q_traits *vt = q_traits_get(qt->vec_dot_type);
	struct mm_job job;

	if (nt >= MM_BLAS_MIN_BATCH && s->n_panels >= pool_size(p)) {
		struct blas_job bj = { out, d, n, nt, x, w, qt->to_float_fast, s };
		pool_run(p, blas_worker, &bj);
		return;
	}

	job.out = out;
	job.d = d;
	job.n = n;
	job.nt = nt;
	job.w = w;
	job.dot = qt->vec_dot;
	if (qt->vec_dot_type == GGML_TYPE_F32) {
		job.xq = (const uint8_t *)x;
		job.qrow = (size_t)n * sizeof(float);
	} else {
		job.qrow = q_row_size(qt->vec_dot_type, n);
		for (int t = 0; t < nt; t++)
			vt->from_float_fast(x + (size_t)t * n, s->xq + (size_t)t * job.qrow, n);
		job.xq = s->xq;
	}
	pool_run(p, mm_worker, &job);
}
