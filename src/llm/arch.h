/* arch.h -- what describes an architecture: its hyperparameter keys, its tensors, its block; the registry. */
#ifndef NATTER_ARCH_H
#define NATTER_ARCH_H

#include <stddef.h>

#include "natter/gguf.h"
#include "natter/llm.h"

struct llm_ctx;
struct llm_model;

/* A tensor dimension, named by what it is; resolved from the
 * hyperparameters when the tensor is bound. */
enum arch_dim {
	D_1,            /* 1 */
	D_EMBD,         /* n_embd */
	D_VOCAB,        /* n_vocab */
	D_Q,            /* n_head * head_dim */
	D_K,            /* n_head_kv * head_dim */
	D_V,            /* n_head_kv * head_dim_v */
	D_QKV,          /* D_Q + D_K + D_V (fused, in that order) */
	D_ATTN_OUT,     /* n_head * head_dim_v */
	D_HEAD,         /* head_dim */
	D_FF,           /* n_ff */
	D_FF2,          /* 2 * n_ff (fused gate and up) */
	D_FF_EXP,       /* n_ff_exp */
	D_FF_SHEXP,     /* n_ff_shexp */
	D_EXPERT,       /* n_expert */
	D_ROPE_HALF,    /* rope_dim / 2, or head_dim / 2 (only the first rope_dim/2 used) */
	D_Q2,           /* 2 * n_head * head_dim (query and gate, Qwen3.5) */
	D_EMBD2,        /* 2 * n_embd */
	D_DN_QKV,       /* Gated DeltaNet: 2 H_k Dk + H_v Dv (q, k, v channels) */
	D_DN_INNER,     /* H_v Dv (ssm_d_inner) */
	D_DN_HV,        /* H_v (ssm_dt_rank) */
	D_DN_DV,        /* Dv (ssm_d_inner / ssm_dt_rank) */
	D_DN_CONV,      /* conv width (ssm_d_conv) */
};

/* When a tensor is there, and how it is used. */
enum {
	AT_OPTIONAL = 1 << 0,   /* may be absent */
	AT_BIAS = 1 << 1,       /* NAME.bias of ne1 floats follows */
	AT_BIAS_OPT = 1 << 2,   /* ... or may */
	AT_F32 = 1 << 3,        /* used as floats (norms, factors): must be F32 */
	AT_DENSE = 1 << 4,      /* only in layers without LLM_LAYER_MOE */
	AT_MOE = 1 << 5,        /* only in layers with LLM_LAYER_MOE */
	AT_SHEXP = 1 << 6,      /* only in layers with LLM_LAYER_SHARED_EXPERT */
	AT_QK_NORM = 1 << 7,    /* only in layers with LLM_LAYER_QK_NORM */
	AT_POST = 1 << 8,       /* only in layers with LLM_LAYER_POST_NORMS */
	AT_RECUR = 1 << 9,      /* only in LLM_LAYER_RECURRENT layers */
	AT_ATTN = 1 << 10,      /* only in the other (attention) layers */
	AT_MTP = 1 << 11,       /* only in LLM_LAYER_MTP blocks */
	AT_RAW = 1 << 12,       /* the table's name is the whole name (no ".weight") */
};

struct arch_tensor {
	enum llm_tensor role;
	enum arch_dim ne[3];    /* GGUF order: row length, rows, experts */
	unsigned flags;
};

/* Reading one file's metadata: KEY suffixes are prefixed with the
 * architecture's name ("%s.attention.head_count"). */
struct arch_loader {
	const struct gguf_file *f;
	const char *arch;
	char *err;
	size_t errlen;
};

/* A count (REQ: absent is an error, else DEF), a float, a string (caller frees). */
int arch_get_int(struct arch_loader *ld, const char *key, int req, int def, int *out);
int arch_get_float(struct arch_loader *ld, const char *key, float def, float *out);
int arch_get_bool(struct arch_loader *ld, const char *key, int def, int *out);
char *arch_get_str(struct arch_loader *ld, const char *key);
/* KV (not NULL) as an array of integers or booleans (gguf_arr_i64 reads
 * them): its length, or -1 when it is none (another type, or an array of
 * floats, strings or arrays).  The caller says what it must hold. */
int64_t arch_int_array(const struct gguf_kv *kv);
/*
 * Which layers slide: attention.sliding_window_pattern if the file has it
 * (a period n: layer il slides unless il % n == n - 1; or one bool per
 * layer), else DEF_PERIOD (0: every layer).  Sliding layers get
 * hp->window, RoPE BASE_SWA and scale 1; needs hp->window > 0.
 */
int arch_set_sliding(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer,
		     int def_period, float base_swa, float scale_swa);

/*
 * An architecture.  HPARAMS runs after the keys every architecture shares
 * (arch.c reads them; LAYER[] starts as full attention with the global
 * RoPE) and sets what is its own.  TENSORS lists every tensor it may have.
 * BLOCK evaluates layer IL for the batch in c->x; NULL means the shared
 * block (blk_layer), which reads the layer's flags.  BLOCK_DESCRIBED says
 * that BLOCK computes nothing but what the layers' kinds and flags describe
 * (and what the file shows by its tensors), so that the training model,
 * which reads only those (src/train/tmodel.c), computes the architecture.
 */
struct arch_desc {
	const char *name;           /* general.architecture */
	const char *models;         /* for people */
	int (*hparams)(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer);
	const struct arch_tensor *tensors;
	int n_tensors;
	void (*block)(struct llm_ctx *c, int il, int nt);
	int block_described;
};

/* The registry: the description of NAME, or NULL. */
const struct arch_desc *arch_find(const char *name);
/* "llama, qwen2, ..." into BUF (for messages). */
void arch_list(char *buf, size_t n);

/* Reads the shared keys, then D's own, into HP and LAYER (n_layer
 * entries, allocated; the caller frees).  Returns 0 or -1 with the error
 * in LD. */
int arch_load_hparams(struct arch_loader *ld, const struct arch_desc *d, struct llm_hparams *hp,
		      struct llm_layer_hparams **layer);

/* Binds every tensor of M's architecture (M->hp and M->layers ready, the
 * latter with n_layer + n_layer_mtp entries: MTP blocks are bound too):
 * shapes from the hyperparameters, types checked; a missing output means
 * tied embeddings.  Returns 0 or -1 with ERR naming the file and tensor. */
int arch_bind(struct llm_model *m, char *err, size_t errlen);

#define ARCH_TENSORS(t) (t), (int)(sizeof(t) / sizeof((t)[0]))

#endif
