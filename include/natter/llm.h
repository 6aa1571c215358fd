/* llm.h -- llama-family models: loading, sessions with a KV cache, evaluation. */
#ifndef NATTER_LLM_H
#define NATTER_LLM_H

#include <stddef.h>
#include <stdint.h>

struct gguf_file;
struct tok_vocab;
struct llm_model;    /* weights: read-only, shareable between sessions */
struct llm_ctx;      /* one session: KV cache, scratch, threads */

enum llm_arch { LLM_ARCH_LLAMA, LLM_ARCH_QWEN2, LLM_ARCH_PHI3 };

/* Hyperparameters, immutable once loaded. */
struct llm_hparams {
	enum llm_arch arch;
	char arch_name[32];
	int n_vocab;        /* rows of the embedding (>= the tokenizer's count) */
	int n_ctx_train;
	int n_embd;
	int n_layer;
	int n_head;
	int n_head_kv;
	int head_dim;
	int n_ff;
	int rope_dim;       /* leading dimensions of each head that are rotated */
	int rope_neox;      /* 1: pairs (i, i + rope_dim/2); 0: pairs (2i, 2i+1) */
	float rope_base;
	float rope_scale;   /* linear position scaling (1 = none) */
	float rms_eps;
};

/*
 * Maps the GGUF file at PATH and checks every tensor the architecture needs
 * (name, shape, type) against the hyperparameters.  Weights stay in the
 * map.  Returns 0, or a negative value with ERR naming the file and the
 * problem (unknown architecture, a missing tensor, an unsupported tensor
 * type by name ...).  Any thread.
 */
int llm_model_load(const char *path, struct llm_model **out, char *err, size_t errlen);
void llm_model_free(struct llm_model *m);
const struct llm_hparams *llm_model_hparams(const struct llm_model *m);
const struct tok_vocab *llm_model_vocab(const struct llm_model *m);
const struct gguf_file *llm_model_gguf(const struct llm_model *m);
/* Bytes of tensor data (the weights read for each token). */
uint64_t llm_model_weight_bytes(const struct llm_model *m);
/* The most common weight type, e.g. "Q4_K" (for display). */
const char *llm_model_type_name(const struct llm_model *m);

/*
 * A session over M with room for N_CTX positions (0: the model's training
 * context, capped at 4096) evaluated in batches of up to N_BATCH tokens,
 * on N_THREADS threads (0: one per core).  All memory is allocated here.
 * M must outlive the session.  Returns NULL with ERR set on failure.
 */
struct llm_ctx *llm_ctx_new(struct llm_model *m, int n_ctx, int n_batch, int n_threads,
			    char *err, size_t errlen);
void llm_ctx_free(struct llm_ctx *c);
int llm_ctx_n_ctx(const struct llm_ctx *c);
int llm_ctx_n_threads(const struct llm_ctx *c);
/* Positions already in the KV cache. */
int llm_ctx_n_past(const struct llm_ctx *c);
/* Forgets cached positions from N_PAST on (0 clears the cache). */
void llm_ctx_truncate(struct llm_ctx *c, int n_past);
/* Drops cached positions [FROM, TO) and moves the later ones down, re-rotating
 * their keys: the context shift used when a conversation outgrows n_ctx. */
int llm_ctx_shift(struct llm_ctx *c, int from, int to);

/* Asked between layers while llm_eval runs; a nonzero answer stops the
 * evaluation (llm_eval then returns LLM_ESTOPPED).  FN is called on the
 * evaluating thread and must be cheap (an atomic load).  NULL: never. */
typedef int (*llm_abort_fn)(void *ctx);
void llm_ctx_set_abort(struct llm_ctx *c, llm_abort_fn fn, void *ctx);

#define LLM_ESTOPPED (-2)

/*
 * Evaluates TOKENS[0..N) at positions n_past .. n_past+N-1 and appends them
 * to the cache.  LOGITS receives N rows of n_vocab floats when ALL_LOGITS,
 * else only the last row (LOGITS may be NULL for none).  Returns 0, or -1
 * with ERR set (token id out of range, context full), or LLM_ESTOPPED when
 * the abort callback asked to stop: the batches finished before it stay
 * in the cache (llm_ctx_n_past tells how many positions), the rest do
 * not.  The session's thread only; no allocation.
 */
int llm_eval(struct llm_ctx *c, const int32_t *tokens, int n, float *logits, int all_logits,
	     char *err, size_t errlen);

#endif
