/* sampler.h -- choosing the next token: penalties, top-k, top-p, min-p, temperature, a seeded draw. */
#ifndef NATTER_SAMPLER_H
#define NATTER_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

/* Defaults are llama.cpp's, so results are comparable. */
struct sampler_params {
	float temp;              /* 0.8; 0 picks the most likely token (greedy), as does one so small that
				  * the largest logit over it overflows */
	int top_k;               /* 40; 0 = off */
	float top_p;             /* 0.95; 1 = off */
	float min_p;             /* 0.05; 0 = off */
	float repeat_penalty;    /* 1.0 = off: divides positive logits, multiplies negative */
	float presence_penalty;  /* 0 = off: subtracted once from tokens seen */
	float frequency_penalty; /* 0 = off: subtracted per occurrence */
	int penalty_last_n;      /* 64: how many recent tokens the penalties look at */
	uint64_t seed;           /* SAMPLER_SEED_RANDOM for a clock-derived seed */
};

#define SAMPLER_SEED_RANDOM UINT64_MAX

/* The settings of a reply as bits, for saying which are not one known
 * value (a change made while it was written, a field a server was not
 * sent): sampler_params' fields, and the reply's token limit. */
enum {
	SP_TEMP = 1 << 0,
	SP_TOP_K = 1 << 1,
	SP_TOP_P = 1 << 2,
	SP_MIN_P = 1 << 3,
	SP_REPEAT_PENALTY = 1 << 4,
	SP_PRESENCE_PENALTY = 1 << 5,
	SP_FREQUENCY_PENALTY = 1 << 6,
	SP_PENALTY_LAST_N = 1 << 7,
	SP_MAX_TOKENS = 1 << 8,
};

/*
 * sampler_params' settings by name (the seed apart: a whole 64-bit number
 * with a "random" of its own): the names /set takes and a generation's
 * columns are called, each with its SP_ bit and its field.  One table for
 * setting one by name (chat_set_param_str), comparing two
 * (sampler_params_diff) and reading a generation's back (store.c, whose
 * columns keep the same names).
 */
struct sampler_setting {
	const char *name;
	unsigned bit;       /* SP_ */
	int integer;        /* an int field, else a float */
	size_t off;         /* in struct sampler_params */
};
extern const struct sampler_setting sampler_settings[];
extern const int sampler_n_settings;
/* The setting called NAME ("temperature" too), or NULL. */
const struct sampler_setting *sampler_setting_find(const char *name);
double sampler_setting_get(const struct sampler_params *p, const struct sampler_setting *s);
/* V into S's field (an integer setting's V is a whole number in range). */
void sampler_setting_put(struct sampler_params *p, const struct sampler_setting *s, double v);

void sampler_params_default(struct sampler_params *p);
/* The SP_ bits of the fields where A and B differ (the seed apart). */
unsigned sampler_params_diff(const struct sampler_params *a, const struct sampler_params *b);
/* Checks ranges; returns 0 or -1 with ERR naming the bad parameter. */
int sampler_params_check(const struct sampler_params *p, char *err, size_t errlen);

struct sampler;

/* Everything is allocated here, once (N_VOCAB candidates). */
struct sampler *sampler_new(int n_vocab, uint64_t seed);
void sampler_free(struct sampler *s);
/* Restarts the random sequence from SEED and forgets the history. */
void sampler_reset(struct sampler *s, uint64_t seed);
/* The seed actually in use (after SAMPLER_SEED_RANDOM was resolved). */
uint64_t sampler_seed(const struct sampler *s);
/* Records a token in the penalty history (prompt and generated tokens). */
void sampler_accept(struct sampler *s, int32_t tok);

/*
 * Picks a token from LOGITS (n_vocab, not modified) under P, applying in
 * order: repetition/presence/frequency penalties over the last
 * penalty_last_n accepted tokens, top-k, top-p, min-p, temperature, then a
 * draw from the seeded generator (or the maximum when temp <= 0).  P is read
 * once per call, so a caller may change it between two tokens.  Does not
 * accept the token.  One thread per sampler; no allocation.
 */
int32_t sampler_sample(struct sampler *s, const struct sampler_params *p, const float *logits);

/* After a sample: how many candidates survived the filters (for tests). */
int sampler_n_candidates(const struct sampler *s);
/* The probability the last draw gave candidate TOK (0 if filtered out). */
float sampler_prob(const struct sampler *s, int32_t tok);

#endif
