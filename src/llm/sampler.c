/* sampler.c -- the sampling chain, over candidates allocated once per session. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natter/sampler.h"

struct cand {
	int32_t id;
	float logit;
	float p;
};

struct sampler {
	int n_vocab;
	struct cand *c;       /* (n_vocab) */
	int nc;               /* candidates left after the last sample */
	int32_t *hist;        /* ring of recent tokens */
	int hist_cap, hist_len, hist_pos;
	uint16_t *count;      /* (n_vocab) scratch for penalties */
	uint64_t rng[4];
	uint64_t seed;
};

void
sampler_params_default(struct sampler_params *p)
{
	p->temp = 0.8f;
	p->top_k = 40;
	p->top_p = 0.95f;
	p->min_p = 0.05f;
	p->repeat_penalty = 1.0f;
	p->presence_penalty = 0.0f;
	p->frequency_penalty = 0.0f;
	p->penalty_last_n = 64;
	p->seed = SAMPLER_SEED_RANDOM;
}

#define SETTING(name, bit, integer, field) { name, bit, integer, offsetof(struct sampler_params, field) }
const struct sampler_setting sampler_settings[] = {
	SETTING("temp", SP_TEMP, 0, temp),
	SETTING("top_k", SP_TOP_K, 1, top_k),
	SETTING("top_p", SP_TOP_P, 0, top_p),
	SETTING("min_p", SP_MIN_P, 0, min_p),
	SETTING("repeat_penalty", SP_REPEAT_PENALTY, 0, repeat_penalty),
	SETTING("presence_penalty", SP_PRESENCE_PENALTY, 0, presence_penalty),
	SETTING("frequency_penalty", SP_FREQUENCY_PENALTY, 0, frequency_penalty),
	SETTING("penalty_last_n", SP_PENALTY_LAST_N, 1, penalty_last_n),
};
#undef SETTING
const int sampler_n_settings = sizeof(sampler_settings) / sizeof(sampler_settings[0]);

const struct sampler_setting *
sampler_setting_find(const char *name)
{
	if (!strcmp(name, "temperature"))
		name = "temp";
	for (int i = 0; i < sampler_n_settings; i++)
		if (!strcmp(sampler_settings[i].name, name))
			return &sampler_settings[i];
	return NULL;
}

double
sampler_setting_get(const struct sampler_params *p, const struct sampler_setting *s)
{
	const char *f = (const char *)p + s->off;
	int i;
	float x;

	if (s->integer) {
		memcpy(&i, f, sizeof(i));
		return i;
	}
	memcpy(&x, f, sizeof(x));
	return x;
}

void
sampler_setting_put(struct sampler_params *p, const struct sampler_setting *s, double v)
{
	char *f = (char *)p + s->off;

	if (s->integer) {
		const int i = (int)v;
		memcpy(f, &i, sizeof(i));
	} else {
		const float x = (float)v;
		memcpy(f, &x, sizeof(x));
	}
}

unsigned
sampler_params_diff(const struct sampler_params *a, const struct sampler_params *b)
{
	unsigned d = 0;

	for (int i = 0; i < sampler_n_settings; i++)
		if (sampler_setting_get(a, &sampler_settings[i]) != sampler_setting_get(b, &sampler_settings[i]))
			d |= sampler_settings[i].bit;
	return d;
}

int
sampler_params_check(const struct sampler_params *p, char *err, size_t errlen)
{
	if (!(p->temp >= 0 && p->temp <= 100)) {
		snprintf(err, errlen, "temperature must be between 0 and 100");
		return -1;
	}
	if (p->top_k < 0) {
		snprintf(err, errlen, "top-k must be 0 (off) or more");
		return -1;
	}
	if (!(p->top_p > 0 && p->top_p <= 1)) {
		snprintf(err, errlen, "top-p must be in (0, 1]");
		return -1;
	}
	if (!(p->min_p >= 0 && p->min_p <= 1)) {
		snprintf(err, errlen, "min-p must be in [0, 1]");
		return -1;
	}
	if (!(p->repeat_penalty > 0 && p->repeat_penalty <= 10)) {
		snprintf(err, errlen, "repeat penalty must be in (0, 10]");
		return -1;
	}
	if (!(fabsf(p->presence_penalty) <= 10) || !(fabsf(p->frequency_penalty) <= 10)) {
		snprintf(err, errlen, "presence and frequency penalties must be in [-10, 10]");
		return -1;
	}
	if (p->penalty_last_n < 0 || p->penalty_last_n > 65536) {
		snprintf(err, errlen, "penalty window must be in [0, 65536]");
		return -1;
	}
	return 0;
}

/* xoshiro256**, seeded through splitmix64. */
static uint64_t
splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t
rng_next(uint64_t *s)
{
	uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

void
sampler_reset(struct sampler *s, uint64_t seed)
{
	uint64_t x;

	if (seed == SAMPLER_SEED_RANDOM) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec;
		seed &= 0xFFFFFFFFull;   /* short enough to type back in */
	}
	s->seed = seed;
	x = seed;
	for (int i = 0; i < 4; i++)
		s->rng[i] = splitmix(&x);
	s->hist_len = s->hist_pos = 0;
	s->nc = 0;
}

struct sampler *
sampler_new(int n_vocab, uint64_t seed)
{
	struct sampler *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->n_vocab = n_vocab;
	s->hist_cap = 65536;
	s->c = malloc((size_t)n_vocab * sizeof(*s->c));
	s->count = calloc(n_vocab, sizeof(*s->count));
	s->hist = malloc(s->hist_cap * sizeof(*s->hist));
	if (!s->c || !s->count || !s->hist) {
		sampler_free(s);
		return NULL;
	}
	sampler_reset(s, seed);
	return s;
}

void
sampler_free(struct sampler *s)
{
	if (!s)
		return;
	free(s->c);
	free(s->count);
	free(s->hist);
	free(s);
}

uint64_t
sampler_seed(const struct sampler *s)
{
	return s->seed;
}

void
sampler_accept(struct sampler *s, int32_t tok)
{
	s->hist[s->hist_pos] = tok;
	s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
	if (s->hist_len < s->hist_cap)
		s->hist_len++;
}

static int
cand_desc(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->logit != y->logit)
		return x->logit > y->logit ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Moves the M largest candidates to the front, sorted (quickselect, then sort). */
static void
top_m(struct cand *c, int n, int m)
{
	int lo = 0, hi = n - 1;

	if (m >= n) {
		qsort(c, n, sizeof(*c), cand_desc);
		return;
	}
	while (lo < hi) {
		struct cand pivot = c[(lo + hi) / 2], tmp;
		int i = lo, j = hi;
		while (i <= j) {
			while (cand_desc(&c[i], &pivot) < 0) i++;
			while (cand_desc(&c[j], &pivot) > 0) j--;
			if (i <= j) {
				tmp = c[i]; c[i] = c[j]; c[j] = tmp;
				i++;
				j--;
			}
		}
		if (m - 1 <= j)
			hi = j;
		else if (m - 1 >= i)
			lo = i;
		else
			break;
	}
	qsort(c, m, sizeof(*c), cand_desc);
}

/* The index of the most likely of the first N candidates (the first of equals). */
static int
top_of(const struct cand *c, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (c[i].logit > c[best].logit)
			best = i;
	return best;
}

/* Greedy: the most likely of the first N candidates, alone. */
static int32_t
pick_top(struct sampler *s, int n)
{
	s->c[0] = s->c[top_of(s->c, n)];
	s->c[0].p = 1;
	s->nc = 1;
	return s->c[0].id;
}

/* Softmax of the first N candidates' logits into p. */
static void
softmax(struct cand *c, int n)
{
	float max = -INFINITY;
	double sum = 0;
	for (int i = 0; i < n; i++)
		if (c[i].logit > max)
			max = c[i].logit;
	if (max == -INFINITY) {
		/* Every token was ruled out: fall back to uniform rather than NaN. */
		for (int i = 0; i < n; i++)
			c[i].p = 1.0f / n;
		return;
	}
	if (max == INFINITY) {
		/* Logits of +inf share it all (inf - inf would be NaN). */
		int k = 0;
		for (int i = 0; i < n; i++)
			k += c[i].logit == INFINITY;
		for (int i = 0; i < n; i++)
			c[i].p = c[i].logit == INFINITY ? 1.0f / k : 0;
		return;
	}
	for (int i = 0; i < n; i++) {
		c[i].p = expf(c[i].logit - max);
		sum += c[i].p;
	}
	for (int i = 0; i < n; i++)
		c[i].p = (float)(c[i].p / sum);
}

int32_t
sampler_sample(struct sampler *s, const struct sampler_params *pp, const float *logits)
{
	struct sampler_params p = *pp;   /* read once: the caller may change it meanwhile */
	int n = s->n_vocab, sorted = 0;

	for (int i = 0; i < n; i++) {
		s->c[i].id = i;
		s->c[i].logit = isnan(logits[i]) ? -INFINITY : logits[i];
	}

	/* 1. Penalties over the last penalty_last_n accepted tokens. */
	if (p.penalty_last_n > 0 && s->hist_len > 0 &&
	    (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)) {
		int last = p.penalty_last_n < s->hist_len ? p.penalty_last_n : s->hist_len;
		for (int k = 1; k <= last; k++) {
			int32_t t = s->hist[(s->hist_pos - k + s->hist_cap) % s->hist_cap];
			if (t >= 0 && t < n && s->count[t] < UINT16_MAX)
				s->count[t]++;
		}
		for (int k = 1; k <= last; k++) {
			int32_t t = s->hist[(s->hist_pos - k + s->hist_cap) % s->hist_cap];
			if (t < 0 || t >= n || s->count[t] == 0)
				continue;
			float *l = &s->c[t].logit;
			if (p.repeat_penalty != 1.0f)
				*l = *l > 0 ? *l / p.repeat_penalty : *l * p.repeat_penalty;
			*l -= s->count[t] * p.frequency_penalty + p.presence_penalty;
			s->count[t] = 0;
		}
	}

	/* Greedy: the most likely token after penalties. */
	if (p.temp <= 0)
		return pick_top(s, n);

	/* 2. top-k. */
	if (p.top_k > 0 && p.top_k < n) {
		top_m(s->c, n, p.top_k);
		n = p.top_k;
		sorted = 1;
	}
	/* 3. top-p: the smallest prefix whose probability reaches top_p. */
	if (p.top_p < 1.0f) {
		int m = n;
		if (!sorted) {
			/* Sort only as much as needed: most mass sits in few tokens. */
			for (m = 256; m < n; m *= 4) {
				double cum = 0;
				top_m(s->c, n, m);
				softmax(s->c, n);
				for (int i = 0; i < m; i++)
					cum += s->c[i].p;
				if (cum >= p.top_p)
					break;
			}
			if (m >= n) {
				m = n;
				top_m(s->c, n, n);
			}
			sorted = 1;
		}
		softmax(s->c, n);
		double cum = 0;
		int keep = n;
		for (int i = 0; i < n && i < m; i++) {
			cum += s->c[i].p;
			if (cum >= p.top_p) {
				keep = i + 1;
				break;
			}
		}
		n = keep;
	}
	/* 4. min-p: drop tokens below min_p times the most likely one. */
	if (p.min_p > 0.0f) {
		float max = -INFINITY;
		for (int i = 0; i < n; i++)
			if (s->c[i].logit > max)
				max = s->c[i].logit;
		float floor_logit = max + logf(p.min_p);
		int k = 0;
		for (int i = 0; i < n; i++)
			if (s->c[i].logit >= floor_logit)
				s->c[k++] = s->c[i];
		n = k;
	}
	/* 5. temperature, 6. the draw. */
	{
		/* A temperature so small that the largest logit over it passes
		 * the largest float would leave inf - inf, NaN, in the softmax
		 * and the draw on the last candidate (or, a negative logit, all
		 * at -inf and the draw uniform); so would a logit of +inf.  It
		 * is greedy. */
		const float l = n > 0 ? s->c[top_of(s->c, n)].logit : 0;
		if (isfinite(l) ? !isfinite(l / p.temp) : l == INFINITY)
			return pick_top(s, n);
	}
	for (int i = 0; i < n; i++)
		s->c[i].logit /= p.temp;
	softmax(s->c, n);
	s->nc = n;
	{
		double u = (double)(rng_next(s->rng) >> 11) * (1.0 / 9007199254740992.0);
		double cum = 0;
		for (int i = 0; i < n; i++) {
			cum += s->c[i].p;
			if (u < cum)
				return s->c[i].id;
		}
		return s->c[n - 1].id;
	}
}

int
sampler_n_candidates(const struct sampler *s)
{
	return s->nc;
}

float
sampler_prob(const struct sampler *s, int32_t tok)
{
	for (int i = 0; i < s->nc; i++)
		if (s->c[i].id == tok)
			return s->c[i].p;
	return 0;
}
