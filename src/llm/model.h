/* model.h -- the inside of a model and a session, shared by the loader, the architectures and the blocks. */
#ifndef NATTER_MODEL_H
#define NATTER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "natter/llm.h"
#include "llm/attn.h"
#include "llm/kv.h"
#include "llm/matmul.h"
#include "llm/tensor.h"

struct arch_desc;
struct dn_scratch;

/*
 * A bound weight: the matrix (or stack of expert matrices) and its bias,
 * both views into the map (DATA NULL when the file lacks them), and what it
 * is -- layer (-1 model-wide) and role -- so that whatever is added to the
 * product later (a LoRA adapter) can find its own.
 */
struct lweight {
	struct ltensor w;   /* NAME.weight */
	struct ltensor b;   /* NAME.bias (ne0 = w.ne1), or absent */
	int layer;
	enum llm_tensor role;
};

struct llm_layer {
	struct lweight t[LLM_TENSOR_COUNT];   /* per-layer roles; the others unused */
};

struct llm_model {
	struct gguf_file *f;
	struct tok_vocab *vocab;
	const struct arch_desc *arch;
	struct llm_hparams hp;
	struct llm_layer_hparams *lhp;        /* (n_layer + n_layer_mtp); hp.layer points here */
	struct lweight g[LLM_TENSOR_LAYER_FIRST];   /* model-wide tensors */
	struct llm_layer *layers;             /* (n_layer + n_layer_mtp) */
	uint64_t weight_bytes;
	char type_name[16];
	char weights_why[128];   /* why the file is mapped, not copied */
	uint64_t packed_bytes;                /* llm_model_pack */
	int pack_rows;
};

/* Distinct RoPE settings among a session's layers (Gemma 3 has two). */
#define LLM_MAX_ROPE 4

struct rope_cfg {
	float base, scale;        /* base, linear position scaling */
	const float *factors;     /* (rope_dim/2) divisors, or NULL */
	float mscale;             /* cos and sin multiplied by it */
	double *inv_freq;         /* (rope_dim/2) base^(-2i/rope_dim) / factor[i] */
};

/* One adapter's pair on one weight, as a session applies it (the
 * adapter's memory, borrowed). */
struct lora_use {
	const float *a;           /* (rank, n_in) */
	const float *b;           /* (n_out, rank) */
	int rank;
	float scale;              /* the user's scale x alpha / rank */
	const struct lora_use *next;   /* the next adapter on the same weight */
};

struct llm_ctx {
	struct llm_model *m;
	int n_ctx, n_batch;
	struct pool *pool;
	struct mm_scratch mm;     /* quantized activations, dequantized panels */
	struct kv_cache kv;
	int pos0;                 /* position of the current batch's first token */
	/* The current batch's first token whose last-layer output is read
	 * (the logits'): nt - 1 when only the last token's logits are asked
	 * for, nt when none are.  The last layer puts every token's keys and
	 * values into the cache and computes the rest for tokens from it on
	 * only (blk_out_first). */
	int out_first;
	/* RoPE: the settings, which one each layer uses, and cos/sin of the
	 * current batch's positions. */
	int n_rope;
	struct rope_cfg rope[LLM_MAX_ROPE];
	int *layer_rope;          /* (n_layer) */
	float *rope_cs;           /* (n_rope, n_batch, rope_dim/2, 2) */
	/* Scratch, sized once for n_batch tokens. */
	float *x;                 /* (n_batch, n_embd) the residual stream */
	float *xb;                /* (n_batch, n_embd) a block's normalised input */
	float *xo;                /* (n_batch, n_embd) a block's output */
	float *qkv;               /* (n_batch, q + k + v) fused projection */
	float *q;                 /* (n_batch, n_head * head_dim) */
	float *k;                 /* (n_batch, n_head_kv * head_dim) */
	float *v;                 /* (n_batch, n_head_kv * head_dim_v) */
	float *att_out;           /* (n_batch, n_head * head_dim_v) */
	struct attn_scratch attn; /* attention's blocks: sized by the heads, not the context */
	enum llm_kv_type kv_type;
	float *hg, *hu;           /* (n_batch, widest FFN x 2) gate and up */
	/* Mixture of experts. */
	float *router;            /* (n_batch, n_expert) router logits */
	int *sel;                 /* (n_batch, n_expert_used) chosen experts */
	float *selw;              /* (n_batch, n_expert_used) their weights */
	int *ex_start;            /* (n_expert + 1) rows of each expert in ex_tok */
	int *ex_tok;              /* (n_batch * n_expert_used) token of each row */
	float *ex_w;              /* (n_batch * n_expert_used) weight of each row */
	float *ex_x;              /* (n_batch, n_embd) rows routed to one expert */
	float *ex_y;              /* (n_batch, n_embd) that expert's output */
	llm_abort_fn abort_fn;
	void *abort_ctx;
	/* LoRA adapters (llm_ctx_set_adapters): the pairs on each weight, by
	 * LORA_SLOT(layer, role); NULL when no adapter is in force. */
	const struct lora_use **lora_at;      /* ((n_layer + 1) * LLM_TENSOR_COUNT) */
	struct lora_use *lora_uses;           /* (n_lora_uses) */
	int n_lora_uses;
	float *lora_t;            /* (n_threads, n_batch * lora_rank_max): A x of each thread */
	int lora_rank_max;
	const struct lora_adapter **lora_set; /* (n_lora_set) in force, scale != 0 */
	float *lora_scale;        /* (n_lora_set) their user scales */
	int n_lora_set;
	/* Hybrid models (blocks-dn.c): DeltaNet states and scratch, or NULL. */
	struct dn_scratch *dn;
	int first_recurrent;      /* the first recurrent layer (n_layer: none) */
	int ckpt_pending;         /* llm_ctx_checkpoint's position to come, or -1 */
};

/* Where the adapters of weight (LAYER, ROLE) are in lora_at (LAYER -1: model-wide). */
#define LORA_SLOT(layer, role) ((size_t)((layer) + 1) * LLM_TENSOR_COUNT + (size_t)(role))

/* A session whose sliding layers keep full KV (KV_NO_RING): the reference
 * the ring is tested against.  Otherwise as llm_ctx_new. */
struct llm_ctx *llm_ctx_new_flags(struct llm_model *m, int n_ctx, int n_batch, int n_threads,
				  unsigned kv_flags, char *err, size_t errlen);

#endif
