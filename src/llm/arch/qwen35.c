/* qwen35.c -- Qwen3.5 / Qwen3.6 (dense hybrid): Gated DeltaNet layers and every interval-th a gated attention layer. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "llm/arch.h"
#include "llm/blocks.h"
#include "llm/blocks-dn.h"
#include "llm/deltanet.h"
#include "llm/model.h"

/*
 * The specification is ../shared/fixtures/QWEN35.md.  What is read here:
 *   nextn_predict_layers   the last N blocks are a multi-token-prediction
 *                          head: bound and checked, never run
 *                          (n_layer = block_count - N);
 *   attention.recurrent_layers, else full_attention_interval (default 4):
 *                          which layers are Gated DeltaNet (recurrent) and
 *                          which are gated full attention -- layer il is
 *                          attention iff (il + 1) % interval == 0;
 *   ssm.*                  the DeltaNet shapes (all required), with
 *                          head_v_dim = inner_size / time_step_rank equal
 *                          to state_size, as llama.cpp assumes;
 *   rope.dimension_sections  the interleaved M-RoPE of llama.cpp, which for
 *                          text positions (p, p, p, 0) is plain NeoX RoPE
 *                          on rope.dimension_count dims as long as every
 *                          rotated pair falls in the t, h or w section;
 *                          sections that leave a pair on the zero
 *                          position are refused.
 */
/* ERR = "PATH: " and the message; returns -1. */
static int __attribute__((format(printf, 2, 3)))
refuse(struct arch_loader *ld, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(ld->err, ld->errlen, "%s: ", ld->f->path);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < ld->errlen)
		vsnprintf(ld->err + n, ld->errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Which of the first N_RUN of N_BLOCK layers are recurrent, into LAYER. */
static int
qwen35_kinds(struct arch_loader *ld, struct llm_layer_hparams *layer, int n_run, int n_block)
{
	char key[160];
	const struct gguf_kv *kv;
	int interval;

	snprintf(key, sizeof(key), "%s.attention.recurrent_layers", ld->arch);
	kv = gguf_find_kv(ld->f, key);
	if (kv) {
		const int64_t n = arch_int_array(kv);
		if (n != n_block && n != n_run) {
			return refuse(ld, "%s must hold one flag per layer (%d, or %d with the MTP blocks)",
			    key, n_run, n_block);
		}
		for (int il = 0; il < (int)kv->val.v.arr.n; il++) {
			int rec = gguf_arr_i64(&kv->val, il) != 0;
			if (il >= n_run && rec) {
				return refuse(ld, "%s marks layer %d recurrent, but it is a multi-token-"
				    "prediction block (nextn_predict_layers), which is full attention", key, il);
			}
			if (il < n_run && rec)
				layer[il].kind = LLM_LAYER_RECURRENT;
		}
		return 0;
	}
	if (arch_get_int(ld, "full_attention_interval", 0, 4, &interval) < 0)
		return -1;
	if (interval < 1)
		return refuse(ld, "full_attention_interval is 0 (it must be at least 1)");
	for (int il = 0; il < n_run; il++)
		if ((il + 1) % interval != 0)
			layer[il].kind = LLM_LAYER_RECURRENT;
	return 0;
}

/* rope.dimension_sections: every rotated pair i < rope_dim/2 must take the
 * t, h or w position (llama.cpp's IMROPE rule on sector i % sum). */
static int
qwen35_sections(struct arch_loader *ld, const struct llm_hparams *hp)
{
	char key[160];
	const struct gguf_kv *kv;
	int64_t sec[4] = { 0 }, sum = 0;

	snprintf(key, sizeof(key), "%s.rope.dimension_sections", ld->arch);
	kv = gguf_find_kv(ld->f, key);
	if (!kv)
		return 0;   /* llama.cpp requires it; without it the RoPE is plain NeoX */
	if (arch_int_array(kv) < 1 || kv->val.v.arr.n > 4) {
		return refuse(ld, "%s must be an array of at most 4 integers", key);
	}
	for (uint64_t i = 0; i < kv->val.v.arr.n; i++) {
		sec[i] = gguf_arr_i64(&kv->val, i);
		if (sec[i] < 0 || sec[i] > 4096) {
			return refuse(ld, "%s holds %lld", key, (long long)sec[i]);
		}
		sum += sec[i];
	}
	if (sum < 1 || sum > hp->head_dim) {
		return refuse(ld, "%s sum to %lld, not 1 .. head_dim %d", key, (long long)sum, hp->head_dim);
	}
	for (int i = 0; i < hp->rope_dim / 2; i++) {
		const int64_t s = i % sum;
		const int t = s % 3 == 0 && s < 3 * sec[0], h = s % 3 == 1 && s < 3 * sec[1];
		const int w = s % 3 == 2 && s < 3 * sec[2];
		if (!t && !h && !w) {
			return refuse(ld, "%s [%lld, %lld, %lld, %lld] leave RoPE pair %d on the extra "
			    "position, which natter does not implement for text", key, (long long)sec[0],
			    (long long)sec[1], (long long)sec[2], (long long)sec[3], i);
		}
	}
	return 0;
}

static int
qwen35_hparams(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer)
{
	const int n_block = hp->n_layer;
	int nextn, n_rec = 0;

	if (arch_get_int(ld, "nextn_predict_layers", 0, 0, &nextn) < 0)
		return -1;
	if (nextn >= n_block) {
		return refuse(ld, "nextn_predict_layers %d leaves no layer of the %d blocks to run", nextn,
		    n_block);
	}
	hp->n_layer = n_block - nextn;
	hp->n_layer_mtp = nextn;
	for (int il = hp->n_layer; il < n_block; il++)
		layer[il].flags |= LLM_LAYER_MTP;
	if (qwen35_kinds(ld, layer, hp->n_layer, n_block) < 0)
		return -1;
	for (int il = 0; il < n_block; il++)
		if (layer[il].kind == LLM_LAYER_RECURRENT)
			n_rec++;
		else
			layer[il].flags |= LLM_LAYER_QK_NORM | LLM_LAYER_ATTN_GATE;
	if (hp->head_dim_v != hp->head_dim) {
		return refuse(ld, "attention.value_length %d differs from key_length %d (Qwen3.5 "
		    "attention has one head size)", hp->head_dim_v, hp->head_dim);
	}
	if (qwen35_sections(ld, hp) < 0)
		return -1;
	if (n_rec == 0)
		return 0;   /* every layer attention: no DeltaNet keys needed */
	if (arch_get_int(ld, "ssm.conv_kernel", 1, 0, &hp->ssm_d_conv) < 0 ||
	    arch_get_int(ld, "ssm.state_size", 1, 0, &hp->ssm_d_state) < 0 ||
	    arch_get_int(ld, "ssm.group_count", 1, 0, &hp->ssm_n_group) < 0 ||
	    arch_get_int(ld, "ssm.time_step_rank", 1, 0, &hp->ssm_dt_rank) < 0 ||
	    arch_get_int(ld, "ssm.inner_size", 1, 0, &hp->ssm_d_inner) < 0)
		return -1;
	if (hp->ssm_dt_rank < 1 || hp->ssm_d_inner % hp->ssm_dt_rank != 0 ||
	    hp->ssm_d_inner / hp->ssm_dt_rank != hp->ssm_d_state) {
		return refuse(ld, "ssm.inner_size %d over ssm.time_step_rank %d value heads does not give "
		    "heads of ssm.state_size %d (head_v_dim must equal state_size)", hp->ssm_d_inner, hp->ssm_dt_rank,
		    hp->ssm_d_state);
	}
	{
		const struct dn_shape sh = { hp->ssm_n_group, hp->ssm_dt_rank, hp->ssm_d_state, hp->ssm_d_state,
		    hp->ssm_d_conv };
		char err[256];
		if (dn_shape_check(&sh, err, sizeof(err)) < 0)
			return refuse(ld, "%s", err);
		for (int il = 0; il < hp->n_layer; il++) {
			if (layer[il].kind != LLM_LAYER_RECURRENT)
				continue;
			layer[il].conv_floats = (size_t)(sh.d_conv - 1) * dn_conv_dim(&sh);
			layer[il].state_floats = (size_t)sh.n_v_heads * sh.d_k * sh.d_v;
		}
	}
	return 0;
}

/* One layer: the mixer (Gated DeltaNet or gated attention) on the
 * attn_norm of x, then the SwiGLU FFN on post_attention_norm; past the
 * mixer's state (every token's), for tokens from blk_out_first on. */
static void
qwen35_block(struct llm_ctx *c, int il, int nt)
{
	const struct llm_hparams *hp = &c->m->hp;
	const struct lweight *t = c->m->layers[il].t;
	const int E = hp->n_embd, from = blk_out_first(c, il), nr = nt - from;
	const size_t n = (size_t)nr * E;
	float *x = c->x + (size_t)from * E;
	const float *mixed = c->xo;

	blk_rmsnorm(c->xb, c->x, &t[LLM_TENSOR_ATTN_NORM], nt, E, hp->rms_eps);
	if (hp->layer[il].kind == LLM_LAYER_RECURRENT) {
		blk_deltanet(c, il, c->xb, c->xo, nt);   /* every token moves the state */
		mixed = c->xo + (size_t)from * E;
	} else {
		blk_gated_attention(c, il, c->xb, c->xo, nt, from);
	}
	if (nr == 0)
		return;
	for (size_t i = 0; i < n; i++)
		x[i] += mixed[i];
	blk_rmsnorm(c->xb, x, &t[LLM_TENSOR_ATTN_POST_NORM], nr, E, hp->rms_eps);
	blk_ffn(c, il, c->xb, c->xo, nr);
	for (size_t i = 0; i < n; i++)
		x[i] += c->xo[i];
}

static const struct arch_tensor qwen35_tensors[] = {
	{ LLM_TENSOR_TOKEN_EMBD, { D_EMBD, D_VOCAB }, 0 },
	{ LLM_TENSOR_OUTPUT_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_OUTPUT, { D_EMBD, D_VOCAB }, AT_OPTIONAL },
	{ LLM_TENSOR_ATTN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_ATTN_POST_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_FFN_GATE, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_UP, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_DOWN, { D_FF, D_EMBD }, 0 },
	/* gated attention: attn_q holds each head's query then its gate */
	{ LLM_TENSOR_ATTN_Q, { D_EMBD, D_Q2 }, AT_ATTN },
	{ LLM_TENSOR_ATTN_K, { D_EMBD, D_K }, AT_ATTN },
	{ LLM_TENSOR_ATTN_V, { D_EMBD, D_V }, AT_ATTN },
	{ LLM_TENSOR_ATTN_Q_NORM, { D_HEAD }, AT_F32 | AT_ATTN },
	{ LLM_TENSOR_ATTN_K_NORM, { D_HEAD }, AT_F32 | AT_ATTN },
	{ LLM_TENSOR_ATTN_OUT, { D_ATTN_OUT, D_EMBD }, AT_ATTN },
	/* Gated DeltaNet */
	{ LLM_TENSOR_ATTN_QKV, { D_EMBD, D_DN_QKV }, AT_RECUR },
	{ LLM_TENSOR_ATTN_GATE, { D_EMBD, D_DN_INNER }, AT_RECUR },
	{ LLM_TENSOR_SSM_CONV1D, { D_DN_CONV, D_DN_QKV }, AT_F32 | AT_RECUR },
	{ LLM_TENSOR_SSM_A, { D_DN_HV }, AT_F32 | AT_RECUR | AT_RAW },
	{ LLM_TENSOR_SSM_DT, { D_DN_HV }, AT_F32 | AT_RECUR | AT_RAW },
	{ LLM_TENSOR_SSM_ALPHA, { D_EMBD, D_DN_HV }, AT_RECUR },
	{ LLM_TENSOR_SSM_BETA, { D_EMBD, D_DN_HV }, AT_RECUR },
	{ LLM_TENSOR_SSM_NORM, { D_DN_DV }, AT_F32 | AT_RECUR },
	{ LLM_TENSOR_SSM_OUT, { D_DN_INNER, D_EMBD }, AT_RECUR },
	/* the multi-token-prediction block (a full-attention block plus these) */
	{ LLM_TENSOR_NEXTN_EH_PROJ, { D_EMBD2, D_EMBD }, AT_MTP },
	{ LLM_TENSOR_NEXTN_ENORM, { D_EMBD }, AT_F32 | AT_MTP },
	{ LLM_TENSOR_NEXTN_HNORM, { D_EMBD }, AT_F32 | AT_MTP },
	{ LLM_TENSOR_NEXTN_SHARED_HEAD_NORM, { D_EMBD }, AT_F32 | AT_MTP | AT_OPTIONAL },
	{ LLM_TENSOR_NEXTN_EMBED_TOKENS, { D_EMBD, D_VOCAB }, AT_MTP | AT_OPTIONAL },
	{ LLM_TENSOR_NEXTN_SHARED_HEAD_HEAD, { D_EMBD, D_VOCAB }, AT_MTP | AT_OPTIONAL },
};

const struct arch_desc arch_qwen35 = {
	"qwen35", "Qwen3.5, Qwen3.6 (dense hybrid: Gated DeltaNet + gated attention)",
	qwen35_hparams, ARCH_TENSORS(qwen35_tensors), qwen35_block,
	/* the recurrent layer kind, ATTN_GATE and QK_NORM; the pre-FFN norm is named
	 * post_attention_norm, which the training model reads from the file */
	1,
};
