/* train.h -- LoRA fine-tuning over a frozen (quantized) base: the operations with their gradients, AdamW, the training model. */
#ifndef NATTER_TRAIN_H
#define NATTER_TRAIN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "natter/gguf.h"

struct pool;   /* src/llm/pool.h: the threads a training model runs on */

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
	int n_head, n_head_kv, head_dim;   /* Q (T, n_head*head_dim); K (T, n_head_kv*head_dim) */
	float scale;                       /* multiplies q.k (usually 1/sqrt(head_dim)) */
	int window;                        /* > 0: token t sees keys t-window+1 .. t; 0: all of 0 .. t */
	float softcap;                     /* > 0: scores become softcap * tanh(score / softcap) */
	int head_dim_v;                    /* V (T, n_head_kv*head_dim_v); 0: head_dim */
};
/* O (T, n_head*head_dim_v); LSE (n_head, T) keeps each softmax's log-normaliser for the backward. */
void tops_attn_fwd(const struct tattn *a, const float *q, const float *k, const float *v, int T, float *o,
		   float *lse);
/* DQ, DK, DV += the gradients, from Q, K, V, O, LSE of the forward and DO. */
void tops_attn_bwd(const struct tattn *a, const float *q, const float *k, const float *v, const float *o,
		   const float *lse, const float *dout, int T, float *dq, float *dk, float *dv);
/* The same computed in blocks of queries by sgemm (what the training model runs; the two
 * above are their scalar reference), over the KV heads [KV0, KV1) and their query heads
 * only: calls on disjoint ranges write disjoint parts of O, LSE, DQ, DK and DV, so threads
 * may split the heads.  SCRATCH holds tops_attn_scratch_floats(T) floats per call. */
size_t tops_attn_scratch_floats(int T);
void tops_attn_fwd_blocked(const struct tattn *a, const float *q, const float *k, const float *v, int T, float *o,
			   float *lse, int kv0, int kv1, float *scratch);
void tops_attn_bwd_blocked(const struct tattn *a, const float *q, const float *k, const float *v, const float *o,
			   const float *lse, const float *dout, int T, float *dq, float *dk, float *dv, int kv0, int kv1,
			   float *scratch);

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

/* Mixture-of-experts routing of ROWS tokens over N experts: PROBS (rows, n) = softmax(LOGITS);
 * SEL (rows, k) the K largest logits, highest first (a tie goes to the lower index, as the
 * engine chooses), or with KEEP the experts SEL already holds; W (rows, k) their
 * probabilities, divided by their sum when NORM. */
void tops_moe_route_fwd(const float *logits, int rows, int n, int k, int norm, int keep, float *probs, int32_t *sel,
			float *w);
/* DLOGITS (rows, n) += the gradient from DW (rows, k) through the chosen experts'
 * probabilities, the selection held fixed (top-k has no gradient of its own). */
void tops_moe_route_bwd(const float *probs, const int32_t *sel, const float *w, int rows, int n, int k, int norm,
			const float *dw, float *dlogits);

/* Softmax cross-entropy: returns the sum over rows t with MASK[t] (NULL: all) of
 * -log softmax(LOGITS[t])[TARGET[t]], and *COUNT those rows.  DLOGITS, if not NULL,
 * receives (softmax - onehot) / NORM on counted rows and 0 on the others. */
double tops_xent(const float *logits, int T, int V, const int32_t *target, const uint8_t *mask, double norm,
		 float *dlogits, int *count);

/* --- tops-dn.c: the operations of Gated DeltaNet layers and gated attention (Qwen3.5) --- */

/* Causal depthwise convolution over T tokens of C channels, then SiLU: Y[t][c] =
 * silu(sum_j W[c K + j] X[t - K + 1 + j][c]), the inputs before the sequence zero (a
 * training sequence starts from the empty state).  X and Y rows are LD floats apart, so a
 * range of channels is the same call on offset pointers (W offset by c0 K). */
void tops_conv_silu_fwd(const float *x, size_t ld, int T, int C, const float *w, int K, float *y);
/* DX += the gradient from DY (rows LD apart); the pre-activation is recomputed from X. */
void tops_conv_silu_bwd(const float *x, size_t ld, int T, int C, const float *w, int K, const float *dy, float *dx);

/* L2 norm of ROWS rows of D, as ggml_l2_norm: Y = SCALE * X / max(||X||, EPS). */
void tops_l2norm_fwd(const float *x, int rows, int D, float eps, float scale, float *y);
void tops_l2norm_bwd(const float *x, int rows, int D, float eps, float scale, const float *dy, float *dx);

/* The gates of the delta rule, T tokens of H value heads: G = SSM_A softplus(ALPHA +
 * DT_BIAS) (the log of the decay; SSM_A is the file's -exp(A_log)) and BETA = sigmoid(B).
 * The backward adds DALPHA, DB and, when not NULL, DA (H) += dL/d ssm_a and DDT (H) +=
 * dL/d dt_bias (frozen in training; for the checks). */
void tops_dn_gates_fwd(const float *alpha, const float *b, int T, int H, const float *ssm_a, const float *dt_bias,
		       float *g, float *beta);
void tops_dn_gates_bwd(const float *alpha, const float *b, int T, int H, const float *ssm_a, const float *dt_bias,
		       const float *dg, const float *dbeta, float *dalpha, float *db, float *da, float *ddt);

/*
 * The gated delta rule over a sequence, from a zero state: per value head h (reading key
 * head h % n_k_heads, llama.cpp's tiled order) with S (d_k, d_v) and at each token
 *   S = e^g S;  S += k (beta (v - S^T k))^T;  o = S^T q.
 * Q, K (T, n_k_heads, d_k) (q already L2-normed and scaled), V and O (T, n_v_heads, d_v),
 * G and BETA (T, n_v_heads).  Calls cover the key heads [I0, I1) and their value heads:
 * calls on disjoint ranges write disjoint parts of O (and of every gradient), so threads
 * may split the key heads.  SCRATCH: tops_delta_scratch_floats(T) floats per call (enough
 * for any sequence of at most T tokens).
 */
struct tdelta {
	int n_k_heads, n_v_heads, d_k, d_v;
};
size_t tops_delta_scratch_floats(const struct tdelta *d, int T);
void tops_delta_fwd(const struct tdelta *d, const float *q, const float *k, const float *v, const float *g,
		    const float *beta, int T, float *o, int i0, int i1, float *scratch);
/* DQ, DK, DV, DG, DBETA += the gradients from DOUT.  Nothing of the forward is kept: the
 * states are recomputed, every C-th one (C = ceil(sqrt(T))) and then those of one chunk at
 * a time, so the scratch holds at most 2 C + 1 states of d_k x d_v floats, and the
 * backward costs about two forwards more. */
void tops_delta_bwd(const struct tdelta *d, const float *q, const float *k, const float *v, const float *g,
		    const float *beta, const float *dout, int T, float *dq, float *dk, float *dv, float *dg, float *dbeta,
		    int i0, int i1, float *scratch);

/* Gated RMSNorm of ROWS rows of D: Y = O / sqrt(mean(O^2) + EPS) * W * silu(Z) (W, of D, is
 * shared by the rows: Qwen3.5's ssm_norm, stored as it multiplies). */
void tops_gnorm_fwd(const float *o, const float *z, const float *w, int rows, int D, float eps, float *y);
void tops_gnorm_bwd(const float *o, const float *z, const float *w, int rows, int D, float eps, const float *dy,
		    float *dout, float *dz);

/* The sigmoid output gate of gated attention: Y = X * sigmoid(GATE) over N values. */
void tops_sigmoid_gate_fwd(const float *x, const float *gate, size_t n, float *y);
void tops_sigmoid_gate_bwd(const float *x, const float *gate, size_t n, const float *dy, float *dx, float *dgate);

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

/* Floats of scratch the two calls below need for T tokens on N_THREADS threads. */
size_t tlinear_scratch_floats(const struct tlinear *l, int T, int n_threads);
/* Y (T, n_out) = X W^T + bias + s B (A drop(X)).  U (T, rank) receives A drop(X) for the
 * backward (unused without a LoRA).  SEED picks the dropout mask (a hash of SEED and the
 * element: nothing is stored); TRAIN 0 disables dropout.  POOL (NULL: the calling thread
 * alone) splits the work; SCRATCH is sized for its threads.  The result does not depend on
 * how the work is split except through BLAS's summation order.  Returns 0, or -1 if the
 * weight type cannot be read.  The pool's owner only. */
int tlinear_fwd(const struct tlinear *l, struct pool *pool, const float *x, int T, int train, uint64_t seed,
		float *y, float *u, float *scratch);
/* DX (T, n_in) += DY W + (LoRA part), when DX is not NULL; the LoRA's DA, DB +=.  X, U,
 * TRAIN and SEED as given to the forward. */
int tlinear_bwd(const struct tlinear *l, struct pool *pool, const float *x, int T, int train, uint64_t seed,
		const float *u, const float *dy, float *dx, float *scratch);

/* --- adamw.c: the optimizer and the learning-rate schedule --- */

struct adamw_cfg {
	double beta1, beta2, eps;
	double weight_decay;   /* decoupled: p -= lr * weight_decay * p */
};
/* beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0. */
struct adamw_cfg adamw_cfg_default(void);
/* Step T (1, 2, ...) over N parameters P with gradients G times GSCALE (e.g. 1 / the number
 * of accumulated micro-batches); M and V are the moment buffers (zero before step 1).
 * Returns 0, or -1 when a parameter came out as no finite number (training diverged). */
int adamw_update(const struct adamw_cfg *c, int64_t t, float lr, float gscale, float *p, const float *g,
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
 * holding gate and up), any of the fused parts adapts the fused weight.  GATE, UP and DOWN
 * select dense feed-forward weights only: in a layer of routed experts they select nothing
 * (expert stacks, the router and the shared expert stay frozen).  In a Gated DeltaNet layer
 * Q, K and V select its attn_qkv (q, k and v channels in one weight) and O its ssm_out;
 * attn_gate (z), ssm_alpha and ssm_beta stay frozen.  In gated attention Q selects attn_q,
 * which holds each head's query and gate. */
enum {
	TMODEL_Q = 1, TMODEL_K = 2, TMODEL_V = 4, TMODEL_O = 8,
	TMODEL_GATE = 16, TMODEL_UP = 32, TMODEL_DOWN = 64, TMODEL_OUTPUT = 128,
	TMODEL_ALL_LINEAR = 127,
};

struct tmodel_opts {
	int max_tokens;                    /* longest sequence a forward takes; with LongRoPE it also
	                                    * picks the factors as the engine does for a context of
	                                    * this size (long above the original context) */
	const struct lora_adapter *init;   /* start from this adapter (its targets, ranks, alpha, scale) ... */
	unsigned targets;                  /* ... or new pairs on these TMODEL_* targets */
	int rank;
	float alpha;                       /* 0: scale = 1 */
	float init_b;                      /* new B drawn from U(-init_b, init_b); 0, the usual, gives B = 0 */
	float dropout;
	uint64_t seed;                     /* initialisation and dropout */
	int n_threads;                     /* the pool the model runs on (0, 1: the calling thread) */
	int recompute;                     /* keep only each layer's input; the backward recomputes the rest */
};

struct llm_hparams;

/*
 * Whether the training model computes a model of hyperparameters HP: what it computes is
 * read from them (and from each layer's llm_layer_hparams), never from the architecture's
 * name: attention layers, full or sliding, with per-head q/k norms, post-attention and
 * post-FFN norms, soft-capping, per-layer RoPE (partial, scaled, with factors), a sigmoid
 * output gate (LLM_LAYER_ATTN_GATE), Gated DeltaNet layers (LLM_LAYER_RECURRENT, with the
 * ssm_* shape), a SiLU or GELU-tanh gated FFN or routed experts (softmax top-k) with a
 * sigmoid-gated shared expert.  Returns 0, or -1 with ERR naming the first layer and
 * feature it lacks (a layer kind, a block feature or an activation it does not know, a
 * recurrent layer without a usable shape).  Any thread.
 */
int tmodel_check(const struct llm_hparams *hp, char *err, size_t errlen);

/*
 * A training model over M's weights (read in place from M's GGUF tensors, in their own
 * types, with M's hyperparameters), with LoRA pairs as its only trained parameters.  All
 * memory for sequences of up to max_tokens is allocated here.  M must outlive it.  Returns
 * 0, or -1 with ERR set (a model tmodel_check refuses, or whose architecture evaluates its
 * layers with a block of its own that the registry does not mark block_described; a target
 * the model lacks; out of memory).  The training thread only, like everything below; the
 * model's own threads work only inside its calls.
 *
 * Memory for activations: without recomputation every layer keeps its two normed inputs,
 * the residual between them, q, k, v, the attention output and the FFN's gate and up, T *
 * (3 E + Q + KV + V + O + 2 FF) floats (Q, KV: n_head and n_head_kv times head_dim; V, O:
 * n_head_kv and n_head times head_dim_v); q and k once more with q/k norms, 2 E more with
 * post norms; with experts, T * n_expert_used * 2 n_ff_exp for the chosen experts' gate and
 * up instead of the dense FFN's, and T * 2 n_ff_shexp for a shared expert.  A Gated
 * DeltaNet layer keeps instead of the attention's T * (2 CD + 3 IN + 2 DK + 2 H_v) floats
 * (CD = 2 DK + IN conv channels, DK = H_k d_k, IN = H_v d_v): the conv's input and output,
 * z, the delta rule's and the gated norm's outputs, q and k normed, alpha and b.  Its
 * per-token states are not kept (T H_v d_k d_v floats a layer: 1 MiB per token at
 * Qwen3.5-0.8B's 16 heads of 128 x 128): the backward recomputes them (tops_delta_bwd),
 * with (2 ceil(sqrt(T)) + 1) d_k d_v floats per thread.  With recomputation, one set in
 * all (the union of what the layers need) plus each layer's input (T * E).
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

/* With FREEZE, every later forward routes each token of each layer to the experts the last
 * forward chose for it (the same tokens must follow), instead of choosing: the function
 * whose gradient tmodel_backward computes -- the choice is held fixed -- so that finite
 * differences can check it where a small step would flip a choice.  For tests. */
void tmodel_moe_freeze(struct tmodel *tm, int freeze);

/* The trained pairs: the base weight each adapts, and its parameters and gradients. */
int tmodel_lora_count(const struct tmodel *tm);
const char *tmodel_lora_base(const struct tmodel *tm, int i);
struct tlora *tmodel_lora(struct tmodel *tm, int i);
int tmodel_lora_n_in(const struct tmodel *tm, int i);
int tmodel_lora_n_out(const struct tmodel *tm, int i);
void tmodel_zero_grad(struct tmodel *tm);
/* The trained parameters as one vector: pair by pair, A then B.  Their count, and the
 * gradients copied out of (G receives n_params floats) or into the pairs. */
size_t tmodel_n_params(const struct tmodel *tm);
void tmodel_grad_get(struct tmodel *tm, float *g);
void tmodel_grad_set(struct tmodel *tm, const float *g);
/* One AdamW step (its counter kept here) over every pair with LR and gradients times GSCALE.
 * Returns 0, or -1 when a parameter came out as no finite number. */
int tmodel_adamw_step(struct tmodel *tm, const struct adamw_cfg *c, float lr, float gscale);
/* The optimizer's state, for checkpoints: the steps taken, and the moments of pair I's A
 * (M1[0], M2[0]) and B (M1[1], M2[1]), laid out like A and B.  Borrowed. */
int64_t tmodel_adamw_t(const struct tmodel *tm);
void tmodel_adamw_set_t(struct tmodel *tm, int64_t t);
void tmodel_adamw_moments(struct tmodel *tm, int i, float *m1[2], float *m2[2]);
int tmodel_n_threads(const struct tmodel *tm);
/* The base model's architecture name, and the pairs' alpha (0: none). */
const char *tmodel_arch(const struct tmodel *tm);
float tmodel_alpha(const struct tmodel *tm);
struct lora_file_info;
/* Saves the pairs as a llama.cpp adapter file (lora_write) with the model's architecture;
 * PROV (may be NULL) gives what produced it: its base_name, base_file and config are
 * recorded, its other fields ignored.  Returns as lora_write does (LORA_ERR_RANGE: a
 * value TYPE cannot hold). */
int tmodel_lora_save(const struct tmodel *tm, const char *path, const char *name, enum ggml_type type,
		     const struct lora_file_info *prov, char *err, size_t errlen);

/* --- tdata.c: conversations as training sequences, rendered exactly as a chat renders them --- */

struct tok_vocab;
struct tdata_tmpl;   /* a compiled chat template with the vocabulary's BOS and EOS text */

/*
 * Loads the chat template as chat_new does (src/llm/chat.c): SPEC names a built-in
 * (chatml, llama2, ...) or a file; NULL takes F's tokenizer.chat_template, or the
 * built-in guessed from ARCH when F has none or its own fails to compile.  V (borrowed;
 * it must outlive the template) gives bos_token and eos_token.  Returns 0, or -1 with
 * ERR set.  Any thread.
 */
int tdata_tmpl_new(const struct gguf_file *f, const char *arch, const struct tok_vocab *v, const char *spec,
		   struct tdata_tmpl **out, char *err, size_t errlen);
void tdata_tmpl_free(struct tdata_tmpl *t);
/* "model", the built-in's or the file's name, with a note when it fell back. */
const char *tdata_tmpl_name(const struct tdata_tmpl *t);
/* The time the template's strftime_now tells (a template such as Llama 3's prints the
 * date): the template's creation, or what tdata_tmpl_set_now sets, before any render (a
 * checkpoint resumed on another day renders its examples as they were rendered). */
int64_t tdata_tmpl_now(const struct tdata_tmpl *t);
void tdata_tmpl_set_now(struct tdata_tmpl *t, int64_t now);
/* Whether the template asks for the time at all (its text calls strftime_now). */
int tdata_tmpl_dated(const struct tdata_tmpl *t);

/* A message of a training conversation; TRAIN marks an assistant message to learn. */
struct tdata_msg {
	const char *role;
	const char *content;
	int train;
};

/* A token sequence with the tokens that carry a loss: LOSS[i] set means token i is
 * predicted (from tokens 0..i-1) and scored. */
struct tdata_seq {
	int32_t *tok;
	uint8_t *loss;
	int n, n_loss;
	int n_open;    /* replies learned whose tokens hold no end-of-generation token: not taught to stop */
};
void tdata_seq_free(struct tdata_seq *s);

/*
 * Renders MSGS[0..N) with T and tokenizes the text as a chat session would see it, with
 * the loss on the tokens of every assistant message marked TRAIN (see tdata.c for how they
 * are found).  Returns 0 with *OUT filled (free with tdata_seq_free), -1 with ERR set (the
 * template refuses the conversation, or renders an assistant turn in a way that does not
 * extend the conversation before it), or -2 when out of memory.
 */
int tdata_encode(const struct tdata_tmpl *t, const struct tdata_msg *msgs, int n, struct tdata_seq *out,
		 char *err, size_t errlen);
/* The prompt a chat session sends for the reply to MSGS[0..N): rendered with the
 * generation prompt and tokenized as chat.c tokenizes it.  Returns 0 or -1 with ERR set. */
int tdata_encode_prompt(const struct tdata_tmpl *t, const struct tdata_msg *msgs, int n, struct tdata_seq *out,
			char *err, size_t errlen);

enum tdata_method { TDATA_SFT, TDATA_DPO };

/* One training example: SFT one sequence; DPO the chosen and the rejected conversation,
 * the same prompt followed by each reply. */
struct tdata_example {
	struct tdata_seq seq[2];
	char where[96];      /* "FILE:LINE", for messages */
	int blank;           /* a reply learned (SFT) or chosen (DPO) is empty or blanks only */
	/* (seq[0].n_open: a reply learned, or the chosen one, that does not end the turn) */
};

/* Examples, the options they were read with, and what reading them found. */
struct tdata_set {
	enum tdata_method method;
	int max_tokens;        /* longer sequences are cut to this many tokens */
	int all_turns;         /* SFT: learn every assistant message, not only the last */
	struct tdata_example *ex;
	int n, cap;
	int n_truncated;       /* examples cut to max_tokens */
	int n_dropped;         /* examples skipped: without a scored token once cut, or empty */
	int n_empty;           /* of those, the ones whose reply has no token at all (not a cut) */
	long n_tokens;         /* tokens over every sequence kept */
};
void tdata_set_init(struct tdata_set *s, enum tdata_method method, int max_tokens, int all_turns);
void tdata_set_free(struct tdata_set *s);

/* Told once per example cut, dropped, learning a blank reply or a reply without an
 * end-of-generation token; the message names the file and line. */
typedef void (*tdata_warn_fn)(void *ctx, const char *msg);

/*
 * Reads the JSON lines of PATH into S, rendered and tokenized with T.  SFT takes
 * {"messages": [...]} (natter's export, TRL's and OpenAI's chat shape; an assistant
 * message with "weight": 0 is not learned, with "weight": 1 it is) and {"prompt": [...],
 * "completion": [...]} (skipped when "label" is false).  DPO takes {"prompt": [...] or
 * "...", "chosen": [...] or "...", "rejected": ...} (natter's export and TRL's) and
 * OpenAI's {"input": {"messages": [...]}, "preferred_output": [...],
 * "non_preferred_output": [...]}.  Content is a string or a list of {"type": "text",
 * "text": ...} parts.  Blank lines are skipped.  Returns 0, or -1 with ERR naming the
 * file and line at fault (nothing of that file is kept).
 */
int tdata_read_jsonl(struct tdata_set *s, const struct tdata_tmpl *t, const char *path, tdata_warn_fn warn,
		     void *wctx, char *err, size_t errlen);
/* A 64-bit fingerprint of every token, flag and example in S, for checkpoints. */
uint64_t tdata_set_fingerprint(const struct tdata_set *s);

/* --- tloop.c: the training loop (SFT and DPO), checkpoints --- */

struct tloop_cfg {
	enum tdata_method method;
	int batch;               /* examples per micro-batch (one sequence at a time) */
	int grad_accum;          /* micro-batches per optimizer step */
	int64_t steps;           /* optimizer steps in all */
	struct adamw_cfg adam;
	struct adamw_sched sched;
	double beta;             /* DPO's beta */
	uint64_t seed;           /* the order of the examples and the dropout masks */
	const char *config;      /* what a checkpoint must have been made with to be resumed (text) */
};

/* What one optimizer step did. */
struct tloop_step {
	int64_t step, steps;     /* the step just taken (1-based) and the total */
	double loss;             /* SFT: mean NLL per scored token; DPO: mean -log sigmoid(z) */
	double lr;
	long tokens;             /* tokens through the model in the step */
	double seconds;          /* the step's wall time */
	double margin;           /* DPO: mean z = beta ((pi_c - ref_c) - (pi_r - ref_r)) */
	double accuracy;         /* DPO: the share of pairs with z > 0 */
};

struct tloop;

/* The most examples one step may take (batch times grad_accum): their count is an int. */
#define TLOOP_MAX_STEP_EXAMPLES (1 << 20)

/*
 * A loop training TM (borrowed) on S (borrowed; both must outlive the loop) with CFG
 * (copied; CONFIG too).  For DPO the reference log-probabilities of every pair are
 * computed here, by TM as it is now with dropout off (the initial adapter: new pairs have
 * B = 0, so the base model).  STOP (may be NULL), set from a signal handler, is polled
 * between sequences.  Returns 0, 1 when stopped, or -1 with ERR set (options out of range,
 * batch times grad_accum above TLOOP_MAX_STEP_EXAMPLES among them).
 */
int tloop_new(struct tmodel *tm, const struct tdata_set *s, const struct tloop_cfg *cfg,
	      const volatile sig_atomic_t *stop, struct tloop **out, char *err, size_t errlen);
void tloop_free(struct tloop *l);
/* Optimizer steps taken so far (0 before the first). */
int64_t tloop_steps_done(const struct tloop *l);

/* Called after every step; a nonzero return stops the loop (with ERR set by the callback's
 * owner).  On the training thread. */
typedef int (*tloop_step_fn)(void *ctx, const struct tloop_step *st);

/*
 * Takes steps until CFG->steps, or until UNTIL (> 0) steps are done, or STOP is seen.  A
 * stop between two steps leaves the state of the last full step (a step cut short is
 * forgotten).  Returns 0 when it reached its end, 1 when stopped (by STOP or the
 * callback), -1 with ERR set -- also when training diverged (a step's loss, or a weight
 * after its update, not a finite number: the weights are then not worth saving).
 */
int tloop_run(struct tloop *l, int64_t until, tloop_step_fn cb, void *ctx, char *err, size_t errlen);

/*
 * Checkpoints: the adapter's pairs, the AdamW moments, the steps taken and CFG->config, in
 * a GGUF file (general.type "natter-checkpoint") written through a temporary file.  Reading
 * refuses a checkpoint of another architecture, other pairs or shapes, or another config
 * (ERR names the first line that differs).  The loop then continues as if never stopped.
 * Return 0 or -1 with ERR set.
 */
#define TLOOP_CKPT_TYPE "natter-checkpoint"
int tloop_save(const struct tloop *l, const char *path, char *err, size_t errlen);
int tloop_resume(struct tloop *l, const char *path, char *err, size_t errlen);

#endif
