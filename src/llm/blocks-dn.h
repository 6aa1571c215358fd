/* blocks-dn.h -- the blocks of hybrid models: a Gated DeltaNet layer over the session's state, gated attention. */
#ifndef NATTER_BLOCKS_DN_H
#define NATTER_BLOCKS_DN_H

#include <limits.h>
#include <stddef.h>

struct llm_ctx;

/*
 * The session's part for these blocks (struct llm_ctx's DN): a Gated
 * DeltaNet state (a view over the layer's cache) per recurrent layer and
 * scratch for N_BATCH tokens.  Made by blk_dn_init when some layer is
 * LLM_LAYER_RECURRENT or LLM_LAYER_ATTN_GATE (after the cache exists);
 * returns 0, or -1 with ERR set.  blk_dn_free(c) frees it (none is fine).
 */
int blk_dn_init(struct llm_ctx *c, char *err, size_t errlen);
void blk_dn_free(struct llm_ctx *c);

/*
 * Gated DeltaNet layer IL on NT normalised rows IN (nt, n_embd) into OUT
 * (nt, n_embd): the input products (attn_qkv, attn_gate, ssm_alpha,
 * ssm_beta) through blk_mm, the conv phase over conv units and the delta
 * rule over value heads on the pool, each thread on its own range, then
 * ssm_out.  The delta rule runs recurrent for batches of fewer than
 * BLK_DN_CHUNKED_MIN tokens and chunked from there (both from the same
 * state, equal to rounding).  Advances the layer's state by NT
 * positions.  The session's thread.
 */
void blk_deltanet(struct llm_ctx *c, int il, const float *in, float *out, int nt);

/*
 * Gated full attention of layer IL (Qwen3.5): attn_q gives per head a
 * query then a gate (interleaved head by head); q and k per-head RMSNorm,
 * RoPE on rope_dim dims, the K and V of all NT tokens into the cache;
 * for tokens [FROM, NT) (blk_out_first) blk_attn_core, each head's output
 * times sigmoid(gate), attn_output into OUT (nt - from, n_embd).
 */
void blk_gated_attention(struct llm_ctx *c, int il, const float *in, float *out, int nt, int from);

/*
 * Batches of at least this many tokens use the chunked delta rule: none,
 * as measured on Qwen3.5-0.8B shapes (16 heads of 128 x 128, 512 tokens,
 * best of 5, thread CPU time): the recurrent form took 5-17% less time
 * than the chunked one in the AVX2 and AVX-512 tiers (and 37% fewer
 * instructions under callgrind), and over a whole pp512 the two were
 * within the machine's noise.  A head's state stays in L2 while one
 * thread runs the head through the batch.  The chunked form (tested
 * against the recurrent one, here and in test-deltanet) is the one to
 * pick where wider GEMM kernels pay for its extra work.
 */
#define BLK_DN_CHUNKED_MIN INT_MAX

/* Tests and measurements: force the delta rule's form for every batch
 * (0 recurrent, 1 chunked), or back to the rule above (-1). */
void blk_dn_force_mode(struct llm_ctx *c, int mode);

#endif
