/* adamw.c -- AdamW with bias correction and decoupled weight decay; the warm-up + cosine schedule. */
#include "config.h"

#include <math.h>

#include "natter/train.h"

struct adamw_cfg
adamw_cfg_default(void)
{
	struct adamw_cfg c = { 0.9, 0.999, 1e-8, 0.0 };
	return c;
}

/*
 * As Loshchilov & Hutter's AdamW (and PyTorch's torch.optim.AdamW):
 *   p <- p - lr wd p;  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
 *   p <- p - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
 */
int
adamw_update(const struct adamw_cfg *c, int64_t t, float lr, float gscale, float *p, const float *g, float *m,
	     float *v, size_t n)
{
	const double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
	const double decay = 1.0 - (double)lr * c->weight_decay;
	float bad = 0;

	for (size_t i = 0; i < n; i++) {
		double gi = (double)g[i] * gscale;
		double mi = c->beta1 * (double)m[i] + (1.0 - c->beta1) * gi;
		double vi = c->beta2 * (double)v[i] + (1.0 - c->beta2) * gi * gi;
		m[i] = (float)mi;
		v[i] = (float)vi;
		p[i] = (float)(p[i] * decay - lr * (mi / bc1) / (sqrt(vi / bc2) + c->eps));
		bad += p[i] - p[i];   /* stays 0 while every p is finite; NaN after one that is not */
	}
	return bad == 0 ? 0 : -1;
}

float
adamw_sched_lr(const struct adamw_sched *s, int64_t step)
{
	double progress;

	if (step < 0)
		step = 0;
	if (step < s->warmup)
		return (float)((double)s->lr_max * (double)(step + 1) / (double)s->warmup);
	if (step >= s->total)
		return s->lr_min;
	progress = (double)(step - s->warmup) / (double)(s->total - s->warmup);
	return (float)(s->lr_min + (s->lr_max - s->lr_min) * 0.5 * (1.0 + cos(3.14159265358979323846 * progress)));
}
