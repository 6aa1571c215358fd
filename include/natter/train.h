/* train.h -- LoRA fine-tuning over a frozen (quantized) base: the operations with their gradients, AdamW, the training model. */
#ifndef NATTER_TRAIN_H
#define NATTER_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "natter/gguf.h"

/*
 * Conventions of every operation below:
 * - activations are float32, row-major (T, D): T tokens of D values;
 * - sums over long rows (norms, softmax, the loss) are accumulated in double;
 * - a backward function ADDS into its gradient outputs (the caller zeroes
 *   them), so that residual branches and micro-batches accumulate for free;
 * - nothing allocates: scratch is the caller's; any thread, on its own buffers.
 */

/* A frozen weight in the model's map, in its own type: N_OUT rows of N_IN. */
struct tweight {
	const void *data;
	enum ggml_type type;
	int n_in, n_out;
	size_t row_bytes;
};

/* --- tops.c: the operations --- */

/* X[t] = SCALE * row TOK[t] of EMB (any readable type; Gemma: SCALE = sqrt(n_embd)).
 * Returns 0, or -1 if a token is out of range or the type unreadable. */
int tops_embed_fwd(const struct tweight *emb, const int32_t *tok, int T, float scale, float *x);
/* DEMB (n_vocab, n_embd) += SCALE * DX[t] at row TOK[t]: for a float32 table being trained. */
void tops_embed_bwd(const int32_t *tok, int T, int n_embd, float scale, const float *dx, float *demb);

/* RMSNorm of ROWS rows of D: Y = X / sqrt(mean(X^2) + EPS) * W.  W (D) is frozen and used
 * as stored (Gemma files hold 1 + w already); NULL means no weight.  Per-head q/k norms are
 * this with ROWS = T * n_head and D = head_dim. */
void tops_rmsnorm_fwd(const float *x, const float *w, int rows, int D, float eps, float *y);
void tops_rmsnorm_bwd(const float *x, const float *w, int rows, int D, float eps, const float *dy, float *dx);

/* Rotary position embedding of heads of HEAD_DIM, of which the first N_ROT rotate:
 * angle_i = pos * FREQ_SCALE * BASE^(-2i/N_ROT) / FACTORS[i]; cos and sin are multiplied by
 * ATTN_FACTOR; the dims past N_ROT pass unchanged. */
struct trope {
	int head_dim, n_rot;
	int neox;              /* 1: pairs (i, i + n_rot/2) (NeoX, Qwen, Phi-3, Gemma); 0: (2i, 2i+1) (llama) */
	float base;
	float freq_scale;      /* linear scaling: 1 / factor (1 = none) */
	const float *factors;  /* (n_rot/2) frequency divisors (rope_freqs, LongRoPE), or NULL */
	float attn_factor;     /* 1 = none */
};
/* In place over X (T, n_head, head_dim); POS (T) holds each token's position. */
void tops_rope_fwd(const struct trope *r, float *x, int T, int n_head, const int32_t *pos);
/* The backward, in place: D holds dY on entry and dX on return (RoPE is linear). */
void tops_rope_bwd(const struct trope *r, float *d, int T, int n_head, const int32_t *pos);

/* Causal attention with grouped KV heads. */
struct tattn {
	int n_head, n_head_kv, head_dim;   /* Q (T, n_head*head_dim); K, V (T, n_head_kv*head_dim) */
	float scale;                       /* multiplies q.k (usually 1/sqrt(head_dim)) */
	int window;                        /* > 0: token t sees keys t-window+1 .. t; 0: all of 0 .. t */
	float softcap;                     /* > 0: scores become softcap * tanh(score / softcap) */
};
/* O (T, n_head*head_dim); LSE (n_head, T) keeps each softmax's log-normaliser for the backward. */
void tops_attn_fwd(const struct tattn *a, const float *q, const float *k, const float *v, int T, float *o,
		   float *lse);
/* DQ, DK, DV += the gradients, from Q, K, V, O, LSE of the forward and DO. */
void tops_attn_bwd(const struct tattn *a, const float *q, const float *k, const float *v, const float *o,
		   const float *lse, const float *dout, int T, float *dq, float *dk, float *dv);

/* Gated feed-forward activation: H = act(G) * U over ROWS rows of N; G and U rows are LD
 * apart (N when dense; 2N when gate and up share one fused output row). */
enum tops_act { TOPS_SILU, TOPS_GELU_TANH };
void tops_glu_fwd(enum tops_act act, const float *g, const float *u, int ld, int rows, int n, float *h);
/* DG, DU (rows LD apart, like G and U) += the gradients from DH (ROWS, N). */
void tops_glu_bwd(enum tops_act act, const float *g, const float *u, int ld, int rows, int n, const float *dh,
		  float *dg, float *du);

/* Logit soft-capping in place: X = CAP * tanh(X / CAP).  The backward takes the output Y
 * and turns DY into DX in place. */
void tops_softcap_fwd(float *x, size_t n, float cap);
void tops_softcap_bwd(const float *y, size_t n, float cap, float *d);

/* Softmax cross-entropy: returns the sum over rows t with MASK[t] (NULL: all) of
 * -log softmax(LOGITS[t])[TARGET[t]], and *COUNT those rows.  DLOGITS, if not NULL,
 * receives (softmax - onehot) / NORM on counted rows and 0 on the others. */
double tops_xent(const float *logits, int T, int V, const int32_t *target, const uint8_t *mask, double norm,
		 float *dlogits, int *count);

/* --- tlinear.c: a frozen linear layer with a trained LoRA branch --- */

struct tlora {
	int rank;
	float scale;      /* s in y += s B (A x): user_scale * alpha / rank */
	float dropout;    /* probability of zeroing an input of the branch (training only) */
	float *a;         /* (rank, n_in), trained */
	float *b;         /* (n_out, rank), trained */
	float *da, *db;   /* their gradients, accumulated */
};

struct tlinear {
	struct tweight w;     /* frozen, never converted whole: dequantized a tile of rows at a time */
	const float *bias;    /* (n_out) frozen, or NULL */
	struct tlora *lora;   /* NULL: no adapter */
};

/* Floats of scratch the two calls below need for T tokens. */
size_t tlinear_scratch_floats(const struct tlinear *l, int T);
/* Y (T, n_out) = X W^T + bias + s B (A drop(X)).  U (T, rank) receives A drop(X) for the
 * backward (unused without a LoRA).  SEED picks the dropout mask (a hash of SEED and the
 * element: nothing is stored); TRAIN 0 disables dropout.  Returns 0, or -1 if the weight
 * type cannot be read. */
int tlinear_fwd(const struct tlinear *l, const float *x, int T, int train, uint64_t seed, float *y, float *u,
		float *scratch);
/* DX (T, n_in) += DY W + (LoRA part), when DX is not NULL; the LoRA's DA, DB +=.  X, U,
 * TRAIN and SEED as given to the forward. */
int tlinear_bwd(const struct tlinear *l, const float *x, int T, int train, uint64_t seed, const float *u,
		const float *dy, float *dx, float *scratch);

/* --- adamw.c: the optimizer and the learning-rate schedule --- */

struct adamw_cfg {
	double beta1, beta2, eps;
	double weight_decay;   /* decoupled: p -= lr * weight_decay * p */
};
/* beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0. */
struct adamw_cfg adamw_cfg_default(void);
/* Step T (1, 2, ...) over N parameters P with gradients G times GSCALE (e.g. 1 / the number
 * of accumulated micro-batches); M and V are the moment buffers (zero before step 1). */
void adamw_update(const struct adamw_cfg *c, int64_t t, float lr, float gscale, float *p, const float *g,
		  float *m, float *v, size_t n);

/* Linear warm-up over WARMUP steps to LR_MAX (step s < WARMUP: LR_MAX * (s+1) / WARMUP), then a
 * cosine from LR_MAX at step WARMUP to LR_MIN at step TOTAL (and LR_MIN after it).  Steps count
 * from 0. */
struct adamw_sched {
	float lr_max, lr_min;
	int64_t warmup, total;
};
float adamw_sched_lr(const struct adamw_sched *s, int64_t step);

/* --- tmodel.c: the training forward and backward of a transformer over frozen weights --- */

struct llm_model;
struct lora_adapter;
struct tmodel;

/* Targets of new adapters (bits).  Where the file fuses weights (phi3's attn_qkv, its ffn_up
 * holding gate and up), any of the fused parts adapts the fused weight. */
enum {
	TMODEL_Q = 1, TMODEL_K = 2, TMODEL_V = 4, TMODEL_O = 8,
	TMODEL_GATE = 16, TMODEL_UP = 32, TMODEL_DOWN = 64, TMODEL_OUTPUT = 128,
	TMODEL_ALL_LINEAR = 127,
};

struct tmodel_opts {
	int max_tokens;                    /* longest sequence a forward takes */
	const struct lora_adapter *init;   /* start from this adapter (its targets, ranks, alpha, scale) ... */
	unsigned targets;                  /* ... or new pairs on these TMODEL_* targets */
	int rank;
	float alpha;                       /* 0: scale = 1 */
	float init_b;                      /* new B drawn from U(-init_b, init_b); 0, the usual, gives B = 0 */
	float dropout;
	uint64_t seed;                     /* initialisation and dropout */
};

/*
 * A training model over M's weights (read in place from M's GGUF tensors, in their own
 * types, with M's hyperparameters), with LoRA pairs as its only trained parameters.  All
 * memory for sequences of up to max_tokens is allocated here.  M must outlive it.  Returns
 * 0, or -1 with ERR set (an architecture the training model does not have yet, a target
 * the model lacks, out of memory).  The training thread only, like everything below.
 */
int tmodel_new(const struct llm_model *m, const struct tmodel_opts *o, struct tmodel **out, char *err,
	       size_t errlen);
void tmodel_free(struct tmodel *tm);

/* Runs TOK[0..T) at positions 0..T-1, keeping what the backward needs.  TRAIN applies
 * dropout; STEP_SEED varies its mask between steps.  LOGITS (T, n_vocab), if not NULL,
 * receives every position's logits.  Returns 0 or -1 with ERR set. */
int tmodel_forward(struct tmodel *tm, const int32_t *tok, int T, int train, uint64_t step_seed, float *logits,
		   char *err, size_t errlen);
/* The loss of the last forward: *NLL = the summed -log p(TARGET[t]) over rows with MASK[t]
 * (NULL: all), *COUNT those rows.  With GRAD, adds the gradient of *NLL / NORM to every
 * pair's DA and DB.  Returns 0 or -1 with ERR set. */
int tmodel_backward(struct tmodel *tm, const int32_t *target, const uint8_t *mask, double norm, int grad,
		    double *nll, int *count, char *err, size_t errlen);

/* The trained pairs: the base weight each adapts, and its parameters and gradients. */
int tmodel_lora_count(const struct tmodel *tm);
const char *tmodel_lora_base(const struct tmodel *tm, int i);
struct tlora *tmodel_lora(struct tmodel *tm, int i);
int tmodel_lora_n_in(const struct tmodel *tm, int i);
int tmodel_lora_n_out(const struct tmodel *tm, int i);
void tmodel_zero_grad(struct tmodel *tm);
/* One AdamW step (its counter kept here) over every pair with LR and gradients times GSCALE. */
void tmodel_adamw_step(struct tmodel *tm, const struct adamw_cfg *c, float lr, float gscale);
/* Saves the pairs as a llama.cpp adapter file (lora_write) with the model's architecture. */
int tmodel_lora_save(const struct tmodel *tm, const char *path, const char *name, enum ggml_type type,
		     char *err, size_t errlen);

#endif
