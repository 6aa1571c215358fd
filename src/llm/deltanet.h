/* deltanet.h -- the Gated DeltaNet layer of Qwen3.5 hybrids: per-sequence state, conv, delta rule, gated norm. */
#ifndef NATTER_DELTANET_H
#define NATTER_DELTANET_H

#include <stddef.h>

/*
 * One Gated DeltaNet layer, between the caller's input projections and its
 * output projection (docs: ../shared/fixtures/QWEN35.md, "The math").  The
 * caller computes, for NT tokens, qkv = attn_qkv x, z = attn_gate x,
 * alpha = ssm_alpha x and beta = ssm_beta x; this unit runs the causal
 * depthwise conv (with its state) and SiLU, the q/k L2 norm, the gates,
 * the delta rule over the per-head states and the gated RMSNorm, and
 * writes y, the input of the caller's ssm_out product.
 *
 * Two phases, so the caller can spread each over threads:
 *   1. dn_conv_run over conv units [u0, u1) (units: the H_k query heads,
 *      the H_k key heads, the H_v value heads; dn_conv_units of them)
 *      writes the activations XC and updates the conv state;
 *   2. dn_heads_run over value heads [h0, h1) reads XC and writes Y and
 *      the heads' states.
 * Every call of phase 2 must follow phase 1 of the same batch over all
 * units.  Calls on disjoint ranges of one phase may run concurrently (each
 * thread with its own WORK); nothing else may touch the state meanwhile.
 * dn_layer_run does both phases over everything on the calling thread.
 *
 * Value head h reads key head h % H_k (llama.cpp's tiled order).
 *
 * Which form: for one token the recurrent one (the chunked form costs 3-4
 * times as much).  For prompts the two are close on an x86 CPU at Qwen3.5's
 * 128 x 128 heads (per token and head, ~68K multiply-adds chunked against
 * ~49K and 16K multiplies recurrent, whose state stays in L2): measured
 * single-threaded, 512 tokens came out 10-20% faster in one form or the
 * other depending on the inputs and the load of the machine.  No call
 * allocates; none aborts on bad arguments (they return -1).
 */

/* Tokens per chunk of the chunked delta rule. */
#define DN_CHUNK 64

/* Limits of dn_shape_check: generous beside real models (Qwen3.5: 16/32
 * heads of 128, kernel 4), small enough that no size overflows and that
 * a small file cannot ask for gigabytes of state a layer. */
#define DN_MAX_HEADS 4096
#define DN_MAX_HEAD_DIM 1024
#define DN_MAX_CONV 64
#define DN_MAX_STATE_FLOATS ((size_t)1 << 22)   /* 16 MiB a layer; Qwen3.5's is 2^19 floats */

/* Shapes of one layer, all from the GGUF metadata. */
struct dn_shape {
	int n_k_heads;  /* H_k: ssm.group_count */
	int n_v_heads;  /* H_v: ssm.time_step_rank, a multiple of H_k */
	int d_k;        /* Dk: ssm.state_size */
	int d_v;        /* Dv: ssm.inner_size / H_v */
	int d_conv;     /* ssm.conv_kernel */
};

/* The layer's small tensors, F32, borrowed (usually from the model's map). */
struct dn_weights {
	const float *conv1d;    /* (conv_dim, d_conv): GGUF ne [d_conv, conv_dim];
	                           element [j, c] at c * d_conv + j weighs x[t - (d_conv-1) + j][c] */
	const float *ssm_a;     /* (H_v) already -exp(A_log) */
	const float *dt_bias;   /* (H_v) ssm_dt.bias */
	const float *norm;      /* (Dv) ssm_norm, shared by all value heads */
	float eps;              /* layer_norm_rms_epsilon: gated norm and L2 norm */
};

/* One batch of NT consecutive tokens of one sequence.  Rows are
 * contiguous; the caller owns every buffer. */
struct dn_batch {
	int nt;
	const float *qkv;       /* (nt, conv_dim) attn_qkv x, before the conv */
	const float *z;         /* (nt, H_v * Dv) attn_gate x */
	const float *alpha;     /* (nt, H_v) ssm_alpha x */
	const float *beta;      /* (nt, H_v) ssm_beta x, before the sigmoid */
	float *xc;              /* (nt, conv_dim) scratch: the conv output, written
	                           by phase 1 (q scaled by 1/sqrt(Dk), q and k
	                           L2-normalised), read by phase 2 */
	float *y;               /* (nt, H_v * Dv) out: concat_h rms(o_h) * silu(z_h) */
};

enum dn_mode {
	DN_RECURRENT,           /* token by token: decode, or a reference */
	DN_CHUNKED              /* chunks of DN_CHUNK tokens (UT form): prompts */
};

/*
 * The state of one layer for one sequence:
 *   conv: (d_conv - 1, conv_dim) the last d_conv - 1 rows of qkv, oldest
 *         first, before the conv (zeros at the start);
 *   S:    (H_v, Dk, Dv) per value head the matrix S of QWEN35.md, row-major
 *         with v fastest (llama.cpp stores the transpose, [v][k]).
 */
struct dn_state;

/* Checks SHAPE (positive sizes, H_v a multiple of H_k, Dv, Dk, heads and
 * d_conv within the DN_MAX_* limits).  Returns 0, or -1 with ERR filled. */
int dn_shape_check(const struct dn_shape *shape, char *err, size_t errlen);
/* Channels of qkv: 2 H_k Dk + H_v Dv (SHAPE checked). */
int dn_conv_dim(const struct dn_shape *shape);
/* Conv units of phase 1: 2 H_k + H_v. */
int dn_conv_units(const struct dn_shape *shape);
/* Floats of dn_batch.xc for NT tokens. */
size_t dn_xc_floats(const struct dn_shape *shape, int nt);
/* Floats of the WORK buffer of one thread of dn_heads_run (either mode,
 * any NT): the caller allocates it once per thread. */
size_t dn_work_floats(const struct dn_shape *shape);
/* Bytes a state holds (conv and S), for the caller's memory estimate. */
size_t dn_state_bytes(const struct dn_shape *shape);

/* A zeroed state for SHAPE, owned by the caller (dn_state_free).  NULL with
 * ERR filled if the shape is refused or memory runs out.  Any thread. */
struct dn_state *dn_state_new(const struct dn_shape *shape, char *err, size_t errlen);
/* A state over caller memory: CONV ((d_conv - 1) x conv_dim floats, none
 * when d_conv is 1, but never NULL) and S (H_v x Dk x Dv floats), which the caller owns,
 * keeps alive and may copy (a session's cache and its checkpoints);
 * dn_state_free then frees only the handle.  NULL with ERR filled if the
 * shape is refused or memory runs out.  Any thread. */
struct dn_state *dn_state_view(const struct dn_shape *shape, float *conv, float *s, char *err, size_t errlen);
void dn_state_free(struct dn_state *st);
/* Back to the start of a sequence (zeros). */
void dn_state_clear(struct dn_state *st);
const struct dn_shape *dn_state_shape(const struct dn_state *st);
/* Read-only views (tests, debugging): conv (d_conv-1, conv_dim), S of head H (Dk, Dv). */
const float *dn_state_conv(const struct dn_state *st);
const float *dn_state_head(const struct dn_state *st, int h);

/* Snapshots for the session's turn-boundary checkpoints: opaque bytes in
 * caller memory, dn_snapshot_size of them, holding the shape and both
 * states.  Save returns 0, or -1 if LEN is too small.  Load returns 0, or
 * -1 with ERR filled (state unchanged) if LEN is wrong or the snapshot is
 * not one of a state of the same shape. */
size_t dn_snapshot_size(const struct dn_state *st);
int dn_snapshot_save(const struct dn_state *st, void *buf, size_t len);
int dn_snapshot_load(struct dn_state *st, const void *buf, size_t len, char *err, size_t errlen);

/* Phase 1 over conv units [U0, U1): conv over the batch with the conv
 * state, SiLU, L2 norm (x / max(||x||, eps)) of the q and k heads, q scaled
 * by 1/sqrt(Dk); writes those channels of B->xc and the conv state.
 * Returns 0, or -1 on a bad range or batch (nothing written). */
int dn_conv_run(struct dn_state *st, const struct dn_weights *w, const struct dn_batch *b, int u0, int u1);

/* Phase 2 over value heads [H0, H1): beta = sigmoid(beta), g = ssm_a *
 * softplus(alpha + dt_bias), the delta rule in MODE over the heads' states,
 * then y_h = rms(o_h, norm) * silu(z_h) into B->y.  WORK: dn_work_floats
 * floats, this thread's.  Both modes leave the same state (to rounding).
 * Returns 0, or -1 on a bad range, mode or batch (nothing written). */
int dn_heads_run(struct dn_state *st, const struct dn_weights *w, const struct dn_batch *b,
		 enum dn_mode mode, int h0, int h1, float *work);

/* Both phases over the whole layer on the calling thread. */
int dn_layer_run(struct dn_state *st, const struct dn_weights *w, const struct dn_batch *b,
		 enum dn_mode mode, float *work);

/* Kernel tiers, best last: the scalar reference always, "avx2" (AVX2 and
 * FMA) and "avx512" (AVX-512F) when the CPU has them.  A new state uses the
 * best available; tests and benchmarks pick others.  dn_state_set_tier
 * must not run while a phase runs on that state. */
int dn_tier_count(void);
const char *dn_tier_name(int tier);
int dn_tier_available(int tier);
/* Returns 0, or -1 if TIER is out of range or not available here. */
int dn_state_set_tier(struct dn_state *st, int tier);
int dn_state_tier(const struct dn_state *st);

#endif
