/* test-sampler.c -- each sampling filter on a known distribution; seeds; live changes. */
#include "config.h"

#include <math.h>

#include "natter/sampler.h"
#include "test.h"

enum { V = 8 };

/* logits = log of these probabilities: 0.4 0.2 0.15 0.1 0.07 0.05 0.02 0.01 */
static const float probs[V] = { 0.4f, 0.2f, 0.15f, 0.1f, 0.07f, 0.05f, 0.02f, 0.01f };

static void
base(struct sampler_params *p)
{
	sampler_params_default(p);
	p->temp = 1.0f;
	p->top_k = 0;
	p->top_p = 1.0f;
	p->min_p = 0.0f;
	p->seed = 1;
}

static float logits[V];

static void
test_filters(void)
{
	struct sampler *s = sampler_new(V, 1);
	struct sampler_params p;
	int32_t t;

	for (int i = 0; i < V; i++)
		logits[i] = logf(probs[i]);

	base(&p);
	sampler_sample(s, &p, logits);
	CHECK(sampler_n_candidates(s) == V, "no filter keeps all %d (got %d)", V, sampler_n_candidates(s));
	CHECK(fabsf(sampler_prob(s, 0) - 0.4f) < 1e-5, "temp 1 keeps the distribution (p0 %g)", sampler_prob(s, 0));

	base(&p);
	p.top_k = 3;
	t = sampler_sample(s, &p, logits);
	CHECK(sampler_n_candidates(s) == 3 && t <= 2, "top-k 3 keeps 3 (got %d, drew %d)", sampler_n_candidates(s), t);
	CHECK(fabsf(sampler_prob(s, 0) - 0.4f / 0.75f) < 1e-5, "top-k renormalises (p0 %g)", sampler_prob(s, 0));

	base(&p);
	p.top_p = 0.7f;   /* 0.4 + 0.2 = 0.6 < 0.7 <= 0.75: three tokens */
	sampler_sample(s, &p, logits);
	CHECK(sampler_n_candidates(s) == 3, "top-p 0.7 keeps 3 (got %d)", sampler_n_candidates(s));
	p.top_p = 0.55f;  /* reached by two (0.6); an exact float tie would be ill-defined */
	sampler_sample(s, &p, logits);
	CHECK(sampler_n_candidates(s) == 2, "top-p 0.55 keeps 2 (got %d)", sampler_n_candidates(s));

	base(&p);
	p.min_p = 0.2f;   /* >= 0.08: 0.4 0.2 0.15 0.1 */
	sampler_sample(s, &p, logits);
	CHECK(sampler_n_candidates(s) == 4, "min-p 0.2 keeps 4 (got %d)", sampler_n_candidates(s));

	base(&p);
	p.temp = 0.5f;    /* p^2 normalised */
	sampler_sample(s, &p, logits);
	{
		double z = 0;
		for (int i = 0; i < V; i++)
			z += probs[i] * probs[i];
		CHECK(fabs(sampler_prob(s, 0) - 0.16 / z) < 1e-4, "temp 0.5 squares (p0 %g, want %g)",
		    sampler_prob(s, 0), 0.16 / z);
	}

	base(&p);
	p.temp = 0;
	CHECK(sampler_sample(s, &p, logits) == 0, "greedy picks the most likely");
	/* A temperature so small that a logit over it overflows is greedy
	 * too (inf - inf was NaN in the softmax and the draw took the last
	 * candidate); so is a logit of +inf, at any temperature. */
	base(&p);
	p.temp = 1e-40f;   /* every logit (all negative) over it is -inf */
	for (uint64_t seed = 1; seed <= 8; seed++) {
		sampler_reset(s, seed);
		CHECK(sampler_sample(s, &p, logits) == 0, "temp 1e-40 picks the most likely (seed %llu)",
		    (unsigned long long)seed);
	}
	{
		float up[V];
		for (int i = 0; i < V; i++)
			up[i] = logits[i] + 10;   /* positive: the top ones over 1e-38 are +inf */
		p.temp = 1e-38f;
		for (uint64_t seed = 1; seed <= 8; seed++) {
			sampler_reset(s, seed);
			CHECK(sampler_sample(s, &p, up) == 0, "temp 1e-38 picks the most likely (seed %llu)",
			    (unsigned long long)seed);
		}
	}
	{
		float saved = logits[3];
		logits[3] = INFINITY;
		base(&p);
		CHECK(sampler_sample(s, &p, logits) == 3, "a logit of +inf is drawn");
		p.top_p = 0.5f;
		CHECK(sampler_sample(s, &p, logits) == 3, "a logit of +inf is drawn, top-p on");
		logits[3] = saved;
	}

	/* Repetition penalty: token 0 seen, its logit (negative) is multiplied. */
	base(&p);
	p.temp = 0;
	p.repeat_penalty = 10.0f;
	sampler_reset(s, 1);
	sampler_accept(s, 0);
	CHECK(sampler_sample(s, &p, logits) == 1, "a strong repeat penalty moves greedy off token 0");
	base(&p);
	p.temp = 0;
	p.presence_penalty = 1.0f;   /* log 0.4 - 1 = -1.92 < log 0.2 = -1.61 */
	CHECK(sampler_sample(s, &p, logits) == 1, "presence penalty");
	p.presence_penalty = 0;
	p.frequency_penalty = 0.3f;
	sampler_accept(s, 0);        /* seen twice: -0.92 - 0.6 = -1.52 > -1.61 */
	CHECK(sampler_sample(s, &p, logits) == 0, "frequency penalty scales with the count (once)");
	sampler_accept(s, 0);        /* three times: -0.92 - 0.9 = -1.82 < -1.61 */
	CHECK(sampler_sample(s, &p, logits) == 1, "frequency penalty scales with the count (twice)");
	p.penalty_last_n = 0;
	CHECK(sampler_sample(s, &p, logits) == 0, "penalty window 0 disables penalties");

	/* Drawn frequencies follow the distribution. */
	{
		int counts[V] = { 0 };
		base(&p);
		sampler_reset(s, 12345);
		for (int i = 0; i < 20000; i++)
			counts[sampler_sample(s, &p, logits)]++;
		int ok = 1;
		for (int i = 0; i < V; i++)
			if (fabs(counts[i] / 20000.0 - probs[i]) > 0.015)
				ok = 0;
		CHECK(ok, "draws match probabilities (%d %d %d ...)", counts[0], counts[1], counts[2]);
	}
	sampler_free(s);
}

static void
test_seed_and_live(void)
{
	enum { VV = 1000, N = 50 };
	static float lg[VV];
	struct sampler *a = sampler_new(VV, 42), *b = sampler_new(VV, 42), *c = sampler_new(VV, 43);
	struct sampler_params p, q;
	int32_t ta[N], tb[N], tc[N];
	int same = 1, diff = 0;

	for (int i = 0; i < VV; i++)
		lg[i] = sinf(i * 0.37f) * 3;
	sampler_params_default(&p);
	p.seed = 42;
	for (int i = 0; i < N; i++) {
		ta[i] = sampler_sample(a, &p, lg);
		tb[i] = sampler_sample(b, &p, lg);
		tc[i] = sampler_sample(c, &p, lg);
		same &= ta[i] == tb[i];
		diff += ta[i] != tc[i];
	}
	CHECK(same, "the same seed gives the same tokens");
	CHECK(diff > 0, "another seed gives other tokens");

	/* A change between two tokens applies to the next one: from step 10
	 * the sampler is greedy, before it the same draws as run A. */
	sampler_reset(b, 42);
	q = p;
	int ok = 1;
	for (int i = 0; i < N; i++) {
		if (i == 10)
			q.temp = 0;
		int32_t t = sampler_sample(b, &q, lg);
		if (i < 10 && t != ta[i])
			ok = 0;
		if (i >= 10) {
			int best = 0;
			for (int k = 1; k < VV; k++)
				if (lg[k] > lg[best])
					best = k;
			if (t != best)
				ok = 0;
		}
	}
	CHECK(ok, "a parameter changed mid-generation takes effect on the next token");
	{
		char err[128];
		struct sampler_params bad = p;
		bad.top_p = 0;
		CHECK(sampler_params_check(&bad, err, sizeof(err)) < 0 && strstr(err, "top-p"), "top-p 0 refused");
		bad = p;
		bad.temp = -1;
		CHECK(sampler_params_check(&bad, err, sizeof(err)) < 0, "negative temperature refused");
	}
	{
		/* All -inf or NaN logits: still a valid token, no crash. */
		static float bad[VV];
		for (int i = 0; i < VV; i++)
			bad[i] = i % 2 ? -INFINITY : NAN;
		int32_t t = sampler_sample(a, &p, bad);
		CHECK(t >= 0 && t < VV, "degenerate logits give a valid token (%d)", t);
	}
	sampler_free(a);
	sampler_free(b);
	sampler_free(c);
}

/* The table of settings by name: each name reaches its own field (checked
 * field by field, not through the table), each setting changed alone
 * differs in its own bit only, and the bits are the SP_ ones, each once. */
static void
test_settings_table(void)
{
	static const struct {
		const char *name;
		size_t off;
		unsigned bit;
	} want[] = {
		{ "temp", offsetof(struct sampler_params, temp), SP_TEMP },
		{ "top_k", offsetof(struct sampler_params, top_k), SP_TOP_K },
		{ "top_p", offsetof(struct sampler_params, top_p), SP_TOP_P },
		{ "min_p", offsetof(struct sampler_params, min_p), SP_MIN_P },
		{ "repeat_penalty", offsetof(struct sampler_params, repeat_penalty), SP_REPEAT_PENALTY },
		{ "presence_penalty", offsetof(struct sampler_params, presence_penalty), SP_PRESENCE_PENALTY },
		{ "frequency_penalty", offsetof(struct sampler_params, frequency_penalty), SP_FREQUENCY_PENALTY },
		{ "penalty_last_n", offsetof(struct sampler_params, penalty_last_n), SP_PENALTY_LAST_N },
	};
	const int n = (int)(sizeof(want) / sizeof(want[0]));
	struct sampler_params a, b;
	unsigned seen = 0;

	CHECK(sampler_n_settings == n, "%d settings in the table, %d expected", sampler_n_settings, n);
	sampler_params_default(&a);
	for (int i = 0; i < n; i++) {
		const struct sampler_setting *st = sampler_setting_find(want[i].name);
		CHECK(st && st->off == want[i].off && st->bit == want[i].bit, "%s: field %zu bit %u", want[i].name,
		    st ? st->off : 0, st ? st->bit : 0);
		if (!st)
			continue;
		b = a;
		sampler_setting_put(&b, st, 3);
		CHECK(sampler_params_diff(&a, &b) == want[i].bit, "%s alone changed: diff %#x", want[i].name,
		    sampler_params_diff(&a, &b));
		CHECK(sampler_setting_get(&b, st) == 3, "%s read back: %g", want[i].name, sampler_setting_get(&b, st));
		seen |= st->bit;
	}
	b = a;
	sampler_setting_put(&b, sampler_setting_find("top_k"), 7);
	sampler_setting_put(&b, sampler_setting_find("min_p"), 0.5);
	sampler_setting_put(&b, sampler_setting_find("frequency_penalty"), 0.25);
	CHECK(b.top_k == 7 && b.min_p == 0.5f && b.frequency_penalty == 0.25f && b.temp == a.temp && b.seed == a.seed,
	    "fields: top_k %d min_p %g frequency_penalty %g", b.top_k, b.min_p, b.frequency_penalty);
	CHECK(seen == (SP_MAX_TOKENS - 1), "the bits of sampler_params' settings, each once: %#x", seen);
	CHECK(sampler_setting_find("temperature") == sampler_setting_find("temp"), "temperature is temp");
	CHECK(!sampler_setting_find("seed") && !sampler_setting_find("max_tokens") && !sampler_setting_find(""),
	    "seed and max_tokens are apart");
}

int
main(void)
{
	test_filters();
	test_seed_and_live();
	test_settings_table();
	return test_done("test-sampler");
}
