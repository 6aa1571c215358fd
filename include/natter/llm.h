/* llm.h -- language models: the architecture registry, loading, sessions with a per-layer cache, evaluation. */
#ifndef NATTER_LLM_H
#define NATTER_LLM_H

#include <stddef.h>
#include <stdint.h>

struct gguf_file;
struct tok_vocab;
struct llm_model;    /* weights: read-only, shareable between sessions */
struct llm_ctx;      /* one session: the per-layer cache, scratch, threads */

/*
 * The architectures natter runs: one line each in the registry
 * (src/llm/arch.c), one file each under src/llm/arch/.  I from 0 to
 * llm_arch_count() - 1.  Any thread.
 */
int llm_arch_count(void);
/* The I-th general.architecture name ("llama"), or NULL past the end. */
const char *llm_arch_name(int i);
/* The models the I-th runs, for people ("Llama 1-3, Mistral, Mixtral"). */
const char *llm_arch_models(int i);

/* How a layer mixes positions; it decides what the layer's cache holds. */
enum llm_layer_kind {
	LLM_LAYER_FULL,       /* attention over every earlier position */
	LLM_LAYER_SLIDING,    /* attention over the last `window` positions */
	LLM_LAYER_RECURRENT,  /* a recurrent state (conv + matrix: Gated
	                       * DeltaNet, the ssm_* hyperparameters) */
};

/* The structure of a layer's block (bits of llm_layer_hparams.flags).
 * Every layer is: x += Attn(Norm(x)); x += FFN(Norm(x)), with these
 * variations. */
enum {
	LLM_LAYER_QK_NORM = 1 << 0,       /* q and k of each head RMS-normalised
	                                   * (attn_q_norm, attn_k_norm) before RoPE */
	LLM_LAYER_POST_NORMS = 1 << 1,    /* the attention and the FFN outputs each
	                                   * pass an RMSNorm (post_attention_norm,
	                                   * post_ffw_norm) before the residual add */
	LLM_LAYER_MOE = 1 << 2,           /* routed experts replace the dense FFN */
	LLM_LAYER_SHARED_EXPERT = 1 << 3, /* plus a shared expert scaled by
	                                   * sigmoid(ffn_gate_inp_shexp . x) */
	LLM_LAYER_MTP = 1 << 4,           /* a multi-token-prediction block after
	                                   * the n_layer that run (index n_layer
	                                   * and up): bound, never evaluated */
	LLM_LAYER_ATTN_GATE = 1 << 5,     /* attn_q holds each head's query and
	                                   * then a gate: the head's output is
	                                   * multiplied by sigmoid(gate) */
};

/* One layer, as the architecture describes it. */
struct llm_layer_hparams {
	enum llm_layer_kind kind;
	unsigned flags;             /* LLM_LAYER_* */
	int window;                 /* SLIDING: a query at p sees keys p-window+1 .. p */
	float rope_base;            /* this layer's RoPE base */
	float rope_scale;           /* linear scaling: angle = pos * rope_scale * freq */
	size_t conv_floats;         /* RECURRENT: floats of its convolution state */
	size_t state_floats;        /* RECURRENT: floats of its matrix state */
};

/* The feed-forward gate: out = down(act(gate x) * up x). */
enum llm_ffn_act { LLM_FFN_SILU, LLM_FFN_GELU_TANH };

/*
 * Hyperparameters, immutable once loaded: everything a forward (or
 * backward) pass needs besides the weights.  LAYER points to n_layer
 * entries owned by the model.
 */
struct llm_hparams {
	char arch_name[32];
	int n_vocab;        /* rows of the embedding (>= the tokenizer's count) */
	int n_ctx_train;
	int n_embd;
	int n_layer;
	int n_head;
	int n_head_kv;
	int head_dim;       /* query and key length per head (may differ from n_embd / n_head) */
	int head_dim_v;     /* value length per head */
	int n_ff;           /* the dense FFN's width */
	enum llm_ffn_act ffn_act;
	/* Mixture of experts: router softmax, top n_expert_used, weights
	 * renormalised to sum 1 when expert_norm. */
	int n_expert;
	int n_expert_used;
	int n_ff_exp;       /* one expert's width */
	int n_ff_shexp;     /* the shared expert's width */
	int expert_norm;
	/* RoPE (per-layer base and scale in LAYER). */
	int rope_dim;       /* leading dimensions of each head that are rotated */
	int rope_neox;      /* 1: pairs (i, i + rope_dim/2); 0: pairs (2i, 2i+1) */
	float rope_base;    /* the full-attention layers' base */
	float rope_scale;   /* and their linear scaling (1 = none) */
	int rope_factors;   /* frequency divisors: 0 none, 1 rope_freqs, 2 LongRoPE long/short */
	int rope_n_ctx_orig;    /* LongRoPE: the long factors when n_ctx exceeds it */
	float rope_attn_factor; /* cos and sin multiplied by it (1 = none) */
	/* Attention. */
	int window;         /* the sliding layers' window (0: none slide) */
	float attn_scale;   /* q.k multiplied by it (usually 1/sqrt(head_dim)) */
	float attn_softcap; /* scores s -> cap tanh(s / cap) before the softmax; 0: none */
	float final_softcap;    /* the output logits likewise; 0: none */
	float embd_scale;   /* token embeddings multiplied by it (1 = none) */
	float rms_eps;
	/* Gated DeltaNet (the LLM_LAYER_RECURRENT layers; 0 without them). */
	int ssm_d_conv;     /* causal conv width (ssm.conv_kernel) */
	int ssm_d_state;    /* Dk = Dv: key and value head size (ssm.state_size) */
	int ssm_n_group;    /* H_k: key heads (ssm.group_count) */
	int ssm_dt_rank;    /* H_v: value heads, a multiple of H_k (ssm.time_step_rank) */
	int ssm_d_inner;    /* H_v * Dv (ssm.inner_size) */
	/* Blocks of the file after the n_layer that run: a multi-token-
	 * prediction head (nextn_predict_layers), bound and checked, not run.
	 * LAYER holds n_layer + n_layer_mtp entries. */
	int n_layer_mtp;
	const struct llm_layer_hparams *layer;
};

/*
 * The weight tensors, by role: one shared table of names (src/llm/arch.c),
 * as GGUF files spell them.  Model-wide roles come first.
 */
enum llm_tensor {
	LLM_TENSOR_TOKEN_EMBD,
	LLM_TENSOR_OUTPUT_NORM,
	LLM_TENSOR_OUTPUT,
	LLM_TENSOR_ROPE_FREQS,
	LLM_TENSOR_ROPE_FACTORS_LONG,
	LLM_TENSOR_ROPE_FACTORS_SHORT,
	LLM_TENSOR_ATTN_NORM,           /* first per-layer role */
	LLM_TENSOR_ATTN_Q,
	LLM_TENSOR_ATTN_K,
	LLM_TENSOR_ATTN_V,
	LLM_TENSOR_ATTN_QKV,
	LLM_TENSOR_ATTN_Q_NORM,
	LLM_TENSOR_ATTN_K_NORM,
	LLM_TENSOR_ATTN_OUT,
	LLM_TENSOR_ATTN_POST_NORM,
	LLM_TENSOR_FFN_NORM,
	LLM_TENSOR_FFN_GATE,
	LLM_TENSOR_FFN_UP,
	LLM_TENSOR_FFN_DOWN,
	LLM_TENSOR_FFN_POST_NORM,
	LLM_TENSOR_FFN_GATE_INP,
	LLM_TENSOR_FFN_GATE_EXPS,
	LLM_TENSOR_FFN_UP_EXPS,
	LLM_TENSOR_FFN_DOWN_EXPS,
	LLM_TENSOR_FFN_GATE_INP_SHEXP,
	LLM_TENSOR_FFN_GATE_SHEXP,
	LLM_TENSOR_FFN_UP_SHEXP,
	LLM_TENSOR_FFN_DOWN_SHEXP,
	LLM_TENSOR_ATTN_GATE,           /* Gated DeltaNet: z, the output gate */
	LLM_TENSOR_SSM_CONV1D,
	LLM_TENSOR_SSM_A,               /* named without ".weight" */
	LLM_TENSOR_SSM_DT,              /* only ".bias" */
	LLM_TENSOR_SSM_ALPHA,
	LLM_TENSOR_SSM_BETA,
	LLM_TENSOR_SSM_NORM,
	LLM_TENSOR_SSM_OUT,
	LLM_TENSOR_NEXTN_EH_PROJ,       /* multi-token prediction (not run) */
	LLM_TENSOR_NEXTN_ENORM,
	LLM_TENSOR_NEXTN_HNORM,
	LLM_TENSOR_NEXTN_EMBED_TOKENS,
	LLM_TENSOR_NEXTN_SHARED_HEAD_HEAD,
	LLM_TENSOR_NEXTN_SHARED_HEAD_NORM,
	LLM_TENSOR_COUNT
};
#define LLM_TENSOR_LAYER_FIRST LLM_TENSOR_ATTN_NORM

/* The role's name without ".weight": "output_norm", "blk.%d.attn_q"
 * (ssm_a and ssm_dt.bias are the whole names: "blk.%d.ssm_dt.bias"). */
const char *llm_tensor_name(enum llm_tensor t);

/*
 * Opens the GGUF file at PATH, reads the hyperparameters its
 * architecture's description names and checks every tensor the
 * description lists (name, shape, type).  The weights are used where they
 * are held: a private copy in 2 MiB pages or the file mapped, as
 * NATTER_WEIGHTS says (model.c weights_flags; a value that is none of
 * copy, mmap, auto is an error).  Returns 0, or a negative value
 * with ERR naming the file and the problem (an architecture natter lacks,
 * with the list of those it runs; a missing tensor; an unsupported tensor
 * type by name ...).  Any thread.
 */
int llm_model_load(const char *path, struct llm_model **out, char *err, size_t errlen);
/* The same with the file mapped whatever NATTER_WEIGHTS says: for callers
 * that describe a model without running it (natter info). */
int llm_model_load_mapped(const char *path, struct llm_model **out, char *err, size_t errlen);
void llm_model_free(struct llm_model *m);
const struct llm_hparams *llm_model_hparams(const struct llm_model *m);
const struct tok_vocab *llm_model_vocab(const struct llm_model *m);
const struct gguf_file *llm_model_gguf(const struct llm_model *m);
/* Bytes of tensor data in the file. */
uint64_t llm_model_weight_bytes(const struct llm_model *m);
/* 1 when the weights are a private copy in memory (NATTER_WEIGHTS), 0
 * when they are the file mapped. */
int llm_model_weights_copied(const struct llm_model *m);
/* Why the weights are the file mapped (NATTER_WEIGHTS=mmap, no huge
 * pages, too little memory for a copy...); "" when copied. */
const char *llm_model_weights_why(const struct llm_model *m);
/* Whether NATTER_WEIGHTS=auto copies a file of FILE_BYTES with
 * AVAIL_BYTES of MemAvailable: when the copy leaves a quarter of it, and
 * at least 1 GiB. */
int llm_weights_copy_fits(uint64_t file_bytes, uint64_t avail_bytes);
/*
 * Rearranges, in place, every matrix of a type that the CPU tier has
 * kernels of packed rows for (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K,
 * Q3_K, Q4_K, Q5_K, IQ4_XS on the x86 tiers; src/llm/pack.c):
 * each group of the tier's pack rows (16 on AVX-512, 8 on AVX2)
 * interleaved so that one vector holds the same 4 bytes of every row of
 * the group, which generation reads with no gathers or horizontal sums.
 * Same bytes, no memory: only a private copy of the weights
 * (llm_model_weights_copied) is rearranged; a mapped file is left as it
 * is, as is everything when NATTER_PACK=0.  For inference: call once,
 * after loading, before any session.  Training reads the file's layout
 * and refuses a packed model.  Returns the bytes packed (0: none), or -1
 * when memory for one group's rows ran out (nothing packed).
 */
int64_t llm_model_pack(struct llm_model *m);
/* Bytes of the weights packed by llm_model_pack, and the rows per group. */
uint64_t llm_model_packed_bytes(const struct llm_model *m, int *group);
/* The most common weight type, e.g. "Q4_K" (for display). */
const char *llm_model_type_name(const struct llm_model *m);

/*
 * A session over M with room for N_CTX positions (0: the model's training
 * context, capped at 4096) evaluated in batches of up to N_BATCH tokens
 * (0: 256), on N_THREADS threads (0: one per core).  All memory is
 * allocated here: a full KV cache for the full-attention layers, a ring
 * of window - 1 + n_batch positions for each sliding-window layer (when
 * that is smaller than n_ctx), K and V stored as F16 (llm_ctx_new_ex
 * chooses), a state per recurrent layer and its checkpoint slots
 * (llm_ctx_checkpoint); pages of the cache that no position has reached
 * yet take no memory.  M must outlive the session.  Returns NULL with ERR
 * set on failure.
 */
struct llm_ctx *llm_ctx_new(struct llm_model *m, int n_ctx, int n_batch, int n_threads,
			    char *err, size_t errlen);

/* How a session's cache stores K and V (one table, in src/llm/kv.c). */
enum llm_kv_type {
	LLM_KV_F16,     /* the default: binary16, rounded to nearest even */
	LLM_KV_Q8_0,    /* 8-bit blocks of 32 within each head (head
	                 * dimensions must be multiples of 32) */
	LLM_KV_F32,
	LLM_KV_TYPE_COUNT
};
/* "f16", "q8_0", "f32"; NULL out of range.  Any thread. */
const char *llm_kv_type_name(enum llm_kv_type t);
/* Reads one of those names into *T.  Returns 0, or -1 (T untouched). */
int llm_kv_type_parse(const char *s, enum llm_kv_type *t);

/* A session's sizes; zeros mean llm_ctx_new's defaults. */
struct llm_ctx_params {
	int n_ctx;                  /* positions (0: training context, capped at 4096) */
	int n_batch;                /* tokens per batch (0: 256) */
	int n_threads;              /* 0: one per core */
	enum llm_kv_type kv_type;   /* LLM_KV_F16 unless set */
	int exact_act;              /* 1: quantized products see their activations to about
	                             * 16 bits, not rounded to 8 as llama.cpp does (slower) */
};
void llm_ctx_params_default(struct llm_ctx_params *p);
/* As llm_ctx_new, with P's settings; ERR names the problem of a cache type
 * the model's heads cannot use (Q8_0 with head dimensions not multiples of
 * 32). */
struct llm_ctx *llm_ctx_new_ex(struct llm_model *m, const struct llm_ctx_params *p, char *err, size_t errlen);
void llm_ctx_free(struct llm_ctx *c);
int llm_ctx_n_ctx(const struct llm_ctx *c);
int llm_ctx_n_threads(const struct llm_ctx *c);
/* Jobs C's threads have run (each a product, an attention, ...), and in
 * *ALONE (may be NULL) those of several tasks the calling thread ran by
 * itself because the load average said another program wanted the CPUs
 * (src/llm/pool.c): a measurement on N threads that ran so is not one. */
unsigned long llm_ctx_jobs(const struct llm_ctx *c, unsigned long *alone);
/* Positions already in the cache. */
int llm_ctx_n_past(const struct llm_ctx *c);
/*
 * Forgets cached positions from N_PAST on and returns how many the cache
 * still holds, from which the caller evaluates again: N_PAST (clamped to
 * 0 .. n_past) when every layer can go back there.  Otherwise fewer: a
 * sliding-window ring cannot go back once it has overwritten keys that a
 * query at N_PAST would read (it holds only window - 1 + n_batch
 * positions), and a recurrent state cannot step back at all -- it goes
 * back to the latest checkpoint (llm_ctx_checkpoint) at or before N_PAST
 * that every layer can continue from, else to 0.  Checkpoints after the
 * position returned are forgotten (what follows them will differ).  The
 * session's thread.
 */
int llm_ctx_truncate(struct llm_ctx *c, int n_past);

/*
 * Checkpoints: copies of the recurrent layers' states, so that
 * llm_ctx_truncate can go back to a turn boundary instead of to 0.
 * llm_ctx_checkpoint(C, POS) keeps the state at position POS: now when
 * POS is n_past, else (POS > n_past) when an evaluation reaches POS
 * (llm_eval ends a batch there; one request pending at a time, a new one
 * replaces it).  A checkpoint at a position already held replaces it; when
 * every slot is taken the oldest checkpoint taken goes.  The slots are
 * allocated with the session: LLM_CHECKPOINT_SLOTS at most, fewer when
 * they would take more than LLM_CHECKPOINT_BUDGET bytes, never fewer than
 * 2 (the state before a prompt's last token and at the end of its reply).
 * Returns 0; 1 when the session has no recurrent layer (nothing to keep:
 * a KV cache goes back anywhere by itself); -1 when POS < n_past.  The
 * session's thread.  No allocation.
 */
#define LLM_CHECKPOINT_SLOTS 8
#define LLM_CHECKPOINT_BUDGET ((size_t)128 << 20)
int llm_ctx_checkpoint(struct llm_ctx *c, int pos);
/* The positions of the checkpoints held, ascending, into POS (at most MAX);
 * returns how many there are. */
int llm_ctx_checkpoints(const struct llm_ctx *c, int *pos, int max);

/* What one layer's cache holds. */
enum llm_cache_kind {
	LLM_CACHE_FULL,       /* K and V of every position 0 .. n_ctx-1 */
	LLM_CACHE_RING,       /* K and V of the last `slots` positions */
	LLM_CACHE_RECURRENT,  /* a state after n_past positions */
};
struct llm_cache_info {
	enum llm_cache_kind kind;
	enum llm_kv_type type;  /* of the K and V rows (FULL, RING) */
	int slots;          /* positions it can hold (0 for a recurrent state) */
	int oldest;         /* the lowest position still held */
	size_t bytes;
};
/* Fills INFO for layer IL; -1 if IL is out of range. */
int llm_ctx_cache_layer(const struct llm_ctx *c, int il, struct llm_cache_info *info);
/* Bytes of the whole cache (KV and recurrent states). */
size_t llm_ctx_cache_bytes(const struct llm_ctx *c);
/* Bytes of the recurrent states alone (0 without recurrent layers). */
size_t llm_ctx_state_bytes(const struct llm_ctx *c);
/* Bytes allocated for checkpoints: every slot and the copy that lets an
 * evaluation stop in the middle of a batch (0 without recurrent layers). */
size_t llm_ctx_checkpoint_bytes(const struct llm_ctx *c);

/* Asked while llm_eval runs -- between layers, and inside them between
 * the tasks of every matrix product and the heads of the attention, so
 * that a stop takes effect within a few milliseconds even on a long
 * batch; a nonzero answer stops the evaluation (llm_eval then returns
 * LLM_ESTOPPED) and FN is not asked again in that call.  FN is called on
 * the evaluating thread only, often (thousands of times per token), and
 * must be cheap (an atomic load).  NULL: never.  Set it between
 * evaluations.  With recurrent layers, a batch of LLM_ABORT_COPY_MIN
 * tokens or more copies their states first (and puts them back when it
 * stops); a smaller batch is asked only before its first recurrent layer. */
#define LLM_ABORT_COPY_MIN 16
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
 * not -- except that a model with recurrent layers restarts its cache
 * (n_past 0) when the stop came after one of them had read part of the
 * batch, since a recurrent state cannot step back.  The session's thread only; no allocation.
 */
int llm_eval(struct llm_ctx *c, const int32_t *tokens, int n, float *logits, int all_logits,
	     char *err, size_t errlen);

/*
 * LoRA adapters (natter/lora.h) on a session: every weight product W x of
 * the forward pass becomes W x + sum_i s_i B_i (A_i x), s_i = SCALES[i] x
 * alpha_i / rank_i (SCALES[i] alone when the adapter has no alpha; the
 * scale the adapter was opened with is not used here).
 * Adapters of scale 0 are left out; N = 0 removes them all.  The
 * adapters are borrowed: they must stay alive until the session is freed
 * or this is called again.  Each must have been opened against this
 * session's model (lora_open); a pair whose base weight is no weight
 * product here (token_embd.weight, looked up rather than multiplied) or
 * whose shape differs is refused.  The adapters belong to the session,
 * not the model, so that two sessions over one model may differ.
 *
 * When the set of adapters or any scale changes, the cache is emptied
 * (llm_ctx_n_past becomes 0): the keys and values it held were computed
 * with the old weights, so the caller evaluates its context again.
 * Returns 1 when it changed, 0 when the adapters and scales were already
 * these (the cache is kept), -1 with ERR set when refused (nothing
 * changed).  Scratch is allocated here, never per token.  The session's
 * thread, not while llm_eval runs.
 */
struct lora_adapter;
int llm_ctx_set_adapters(struct llm_ctx *c, const struct lora_adapter *const *adapters, const float *scales, int n,
			 char *err, size_t errlen);
/* Adapters in force with a nonzero scale, and the weights they adapt. */
int llm_ctx_n_adapters(const struct llm_ctx *c);
int llm_ctx_n_adapted(const struct llm_ctx *c);

#endif
