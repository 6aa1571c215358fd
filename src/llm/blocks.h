/* blocks.h -- the shared pieces every architecture's layer is built from: norms, RoPE, attention, FFN, experts. */
#ifndef NATTER_BLOCKS_H
#define NATTER_BLOCKS_H

#include <stddef.h>

#include "llm/attn.h"

struct llm_ctx;
struct lweight;
struct llm_hparams;

/*
 * The one weight product: OUT (nt, w.ne1) = X (nt, w.ne0) W^T + bias, with
 * W the EXPERT-th matrix of a stack (or W itself when EXPERT < 0).  Every
 * product of the forward pass goes through here, so that what belongs to
 * a weight (a LoRA adapter, found by W's layer and role) is added in one
 * place.  The session's thread; uses its pool.
 */
void blk_mm(struct llm_ctx *c, float *out, const float *x, const struct lweight *w, int expert, int nt);
/* Several products by the same X at once (at most MM_MAX_PARTS): each
 * OUTS[i] as blk_mm (OUTS[i], X, WS[i], EXPERT, NT) makes it, with one wait
 * for the threads when all are GEMVs (mm_matmul_many). */
struct blk_out {
	float *out;
	const struct lweight *w;
};
void blk_mm_many(struct llm_ctx *c, const float *x, int expert, int nt, int n, const struct blk_out *outs);

/* RMSNorm of ROWS rows of N floats: OUT = X / rms(X) * W (OUT may be X). */
void blk_rmsnorm(float *out, const float *x, const struct lweight *w, int rows, int n, float eps);

/* cos and sin of the batch's positions for every RoPE setting of the session. */
void blk_rope_prepare(struct llm_ctx *c, int nt);
/* Rotates the first rope_dim dimensions of each of the N_HEADS heads of the
 * NT rows of X with layer IL's setting. */
void blk_rope(struct llm_ctx *c, int il, float *x, int nt, int n_heads);

/* Layer IL's attention shape: heads, window (sliding layers), query
 * scale and soft-cap. */
struct attn_shape blk_attn_shape(const struct llm_hparams *hp, int il);
/*
 * The first of the batch's tokens whose output layer IL computes: 0 but
 * in the last layer, whose output only the logits read (c->out_first:
 * the last token, or none, or all).  Every token's keys and values go
 * into the cache all the same; only the queries, the output projection
 * and the FFN are left out for the others (as llama.cpp's inp_out_ids).
 */
int blk_out_first(const struct llm_ctx *c, int il);
/* softmax(q K^T) V for the queries [FROM, NT) of the batch in c->q (the
 * batch's keys already in the cache) over layer IL's cache (window,
 * soft-cap and query scale from the description) into c->att_out's
 * first NT - FROM rows: the one attention kernel (attn_forward, tiled
 * with an online softmax). */
void blk_attn_core(struct llm_ctx *c, int il, int nt, int from);
/* Self-attention of layer IL: q, k, v projections (fused or not, biases),
 * per-head q/k norms, RoPE, the K and V of all NT tokens into the layer's
 * cache, attention and the output projection for tokens [FROM, NT) into
 * OUT (nt - from, n_embd); FROM = NT: the keys and values alone. */
void blk_attention(struct llm_ctx *c, int il, const float *in, float *out, int nt, int from);

/* The dense gated FFN of layer IL: down(act(gate x) * up x). */
void blk_ffn(struct llm_ctx *c, int il, const float *in, float *out, int nt);
/*
 * Layer IL's experts: router softmax, top-k, and in a batch the rows routed
 * to each expert gathered so that its weights are read once; outputs
 * added back weighted; plus the shared expert if the layer has one.
 */
void blk_moe(struct llm_ctx *c, int il, const float *in, float *out, int nt);
/*
 * Routing of one token: softmax over the N router LOGITS, the K most
 * probable experts into SEL (highest first; ties go to the lower index),
 * their probabilities into W, renormalised to sum 1 when NORM.
 */
void blk_moe_route(const float *logits, int n, int k, int norm, int *sel, float *w);

/* X[i] = cap tanh(X[i] / cap) for N floats (CAP 0: unchanged). */
void blk_softcap(float *x, size_t n, float cap);

/* One layer as its description says: x += [PostNorm](Attn(Norm(x)));
 * x += [PostNorm](FFN or MoE(Norm(x))), past the keys and values for the
 * tokens from blk_out_first on.  The block of every architecture but
 * qwen35's. */
void blk_layer(struct llm_ctx *c, int il, int nt);

#endif
