/* matmul.c -- batched matrix products: activations converted once, weight rows split across threads. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "natter/quant.h"
#include "llm/matmul.h"
#include "llm/pool.h"

int
mm_scratch_init(struct mm_scratch *s, int n_batch, size_t max_in)
{
	/* The widest activation format is float32 (4 bytes per element). */
	s->cap = (size_t)n_batch * max_in * 4 + 64;
	s->xq = malloc(s->cap);
	s->wf = NULL;
	s->wf_cap = 0;
	return s->xq ? 0 : -1;
}

void
mm_scratch_free(struct mm_scratch *s)
{
	free(s->xq);
	free(s->wf);
	s->xq = NULL;
	s->wf = NULL;
}

struct mm_job {
	float *out;
	int d, n, nt;
	const uint8_t *xq;
	size_t qrow;
	const struct mm_weight *w;
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

void
mm_matmul(struct pool *p, struct mm_scratch *s, float *out, int d, const float *x, int n,
	  const struct mm_weight *w, int nt)
{
	const struct q_traits *qt = q_traits_get(w->type);
	const struct q_traits *vt = q_traits_get(qt->vec_dot_type);
	struct mm_job job;

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
