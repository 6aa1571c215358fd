/* arch.c -- the architecture registry, the one table of tensor names, the shared hyperparameter keys, binding. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/gguf.h"
#include "natter/quant.h"
#include "llm/arch.h"
#include "llm/model.h"

/*
 * The registry: one line per architecture, each described in its own file
 * src/llm/arch/NAME.c as `const struct arch_desc arch_NAME`.  Adding an
 * architecture is that file, one line here and its tests.
 */
#define ARCH_REGISTRY(X) \
	X(llama) \
	X(qwen2) \
	X(phi3) \
	X(qwen3) \
	X(qwen3moe) \
	X(qwen2moe) \
	X(gemma2) \
	X(gemma3) \
	X(qwen35)

#define ARCH_DECLARE(n) extern const struct arch_desc arch_##n;
ARCH_REGISTRY(ARCH_DECLARE)
#define ARCH_ENTRY(n) &arch_##n,
static const struct arch_desc *const registry[] = { ARCH_REGISTRY(ARCH_ENTRY) };
#define N_ARCH ((int)(sizeof(registry) / sizeof(registry[0])))

int llm_arch_count(void) { return N_ARCH; }
const char *llm_arch_name(int i) { return i >= 0 && i < N_ARCH ? registry[i]->name : NULL; }
const char *llm_arch_models(int i) { return i >= 0 && i < N_ARCH ? registry[i]->models : NULL; }

const struct arch_desc *
arch_find(const char *name)
{
	for (int i = 0; i < N_ARCH; i++)
		if (strcmp(registry[i]->name, name) == 0)
			return registry[i];
	return NULL;
}

void
arch_list(char *buf, size_t n)
{
	size_t len = 0;

	buf[0] = 0;
	for (int i = 0; i < N_ARCH && len < n; i++)
		len += snprintf(buf + len, n - len, "%s%s", i ? ", " : "", registry[i]->name);
}

/* Every tensor name, by role, as GGUF files spell them (".weight" and
 * ".bias" follow). */
static const char *const tensor_names[LLM_TENSOR_COUNT] = {
	[LLM_TENSOR_TOKEN_EMBD] = "token_embd",
	[LLM_TENSOR_OUTPUT_NORM] = "output_norm",
	[LLM_TENSOR_OUTPUT] = "output",
	[LLM_TENSOR_ROPE_FREQS] = "rope_freqs",
	[LLM_TENSOR_ROPE_FACTORS_LONG] = "rope_factors_long",
	[LLM_TENSOR_ROPE_FACTORS_SHORT] = "rope_factors_short",
	[LLM_TENSOR_ATTN_NORM] = "blk.%d.attn_norm",
	[LLM_TENSOR_ATTN_Q] = "blk.%d.attn_q",
	[LLM_TENSOR_ATTN_K] = "blk.%d.attn_k",
	[LLM_TENSOR_ATTN_V] = "blk.%d.attn_v",
	[LLM_TENSOR_ATTN_QKV] = "blk.%d.attn_qkv",
	[LLM_TENSOR_ATTN_Q_NORM] = "blk.%d.attn_q_norm",
	[LLM_TENSOR_ATTN_K_NORM] = "blk.%d.attn_k_norm",
	[LLM_TENSOR_ATTN_OUT] = "blk.%d.attn_output",
	[LLM_TENSOR_ATTN_POST_NORM] = "blk.%d.post_attention_norm",
	[LLM_TENSOR_FFN_NORM] = "blk.%d.ffn_norm",
	[LLM_TENSOR_FFN_GATE] = "blk.%d.ffn_gate",
	[LLM_TENSOR_FFN_UP] = "blk.%d.ffn_up",
	[LLM_TENSOR_FFN_DOWN] = "blk.%d.ffn_down",
	[LLM_TENSOR_FFN_POST_NORM] = "blk.%d.post_ffw_norm",
	[LLM_TENSOR_FFN_GATE_INP] = "blk.%d.ffn_gate_inp",
	[LLM_TENSOR_FFN_GATE_EXPS] = "blk.%d.ffn_gate_exps",
	[LLM_TENSOR_FFN_UP_EXPS] = "blk.%d.ffn_up_exps",
	[LLM_TENSOR_FFN_DOWN_EXPS] = "blk.%d.ffn_down_exps",
	[LLM_TENSOR_FFN_GATE_INP_SHEXP] = "blk.%d.ffn_gate_inp_shexp",
	[LLM_TENSOR_FFN_GATE_SHEXP] = "blk.%d.ffn_gate_shexp",
	[LLM_TENSOR_FFN_UP_SHEXP] = "blk.%d.ffn_up_shexp",
	[LLM_TENSOR_FFN_DOWN_SHEXP] = "blk.%d.ffn_down_shexp",
	[LLM_TENSOR_ATTN_GATE] = "blk.%d.attn_gate",
	[LLM_TENSOR_SSM_CONV1D] = "blk.%d.ssm_conv1d",
	[LLM_TENSOR_SSM_A] = "blk.%d.ssm_a",
	[LLM_TENSOR_SSM_DT] = "blk.%d.ssm_dt.bias",
	[LLM_TENSOR_SSM_ALPHA] = "blk.%d.ssm_alpha",
	[LLM_TENSOR_SSM_BETA] = "blk.%d.ssm_beta",
	[LLM_TENSOR_SSM_NORM] = "blk.%d.ssm_norm",
	[LLM_TENSOR_SSM_OUT] = "blk.%d.ssm_out",
	[LLM_TENSOR_NEXTN_EH_PROJ] = "blk.%d.nextn.eh_proj",
	[LLM_TENSOR_NEXTN_ENORM] = "blk.%d.nextn.enorm",
	[LLM_TENSOR_NEXTN_HNORM] = "blk.%d.nextn.hnorm",
	[LLM_TENSOR_NEXTN_EMBED_TOKENS] = "blk.%d.nextn.embed_tokens",
	[LLM_TENSOR_NEXTN_SHARED_HEAD_HEAD] = "blk.%d.nextn.shared_head_head",
	[LLM_TENSOR_NEXTN_SHARED_HEAD_NORM] = "blk.%d.nextn.shared_head_norm",
};

const char *
llm_tensor_name(enum llm_tensor t)
{
	return (unsigned)t < LLM_TENSOR_COUNT ? tensor_names[t] : NULL;
}

/* --- reading metadata --- */

static const char *
key_of(struct arch_loader *ld, const char *suffix, char *buf, size_t n)
{
	snprintf(buf, n, "%s.%s", ld->arch, suffix);
	return buf;
}

int
arch_get_int(struct arch_loader *ld, const char *suffix, int req, int def, int *out)
{
	char key[160];
	uint64_t v;

	key_of(ld, suffix, key, sizeof(key));
	if (!gguf_find_kv(ld->f, key)) {
		if (req) {
			snprintf(ld->err, ld->errlen, "%s: missing hyperparameter %s", ld->f->path, key);
			return -1;
		}
		*out = def;
		return 0;
	}
	if (gguf_get_u64(ld->f, key, &v) < 0 || v > (1u << 30)) {
		snprintf(ld->err, ld->errlen, "%s: hyperparameter %s is not a sensible count", ld->f->path, key);
		return -1;
	}
	*out = (int)v;
	return 0;
}

int
arch_get_float(struct arch_loader *ld, const char *suffix, float def, float *out)
{
	char key[160];
	double v;

	key_of(ld, suffix, key, sizeof(key));
	if (!gguf_find_kv(ld->f, key)) {
		*out = def;
		return 0;
	}
	if (gguf_get_f64(ld->f, key, &v) < 0 || !isfinite(v) || fabs(v) > 1e30) {
		snprintf(ld->err, ld->errlen, "%s: hyperparameter %s is not a number", ld->f->path, key);
		return -1;
	}
	*out = (float)v;
	return 0;
}

int
arch_get_bool(struct arch_loader *ld, const char *suffix, int def, int *out)
{
	char key[160];

	key_of(ld, suffix, key, sizeof(key));
	if (!gguf_find_kv(ld->f, key)) {
		*out = def;
		return 0;
	}
	if (gguf_get_bool(ld->f, key, out) < 0) {
		snprintf(ld->err, ld->errlen, "%s: hyperparameter %s is not a boolean", ld->f->path, key);
		return -1;
	}
	return 0;
}

char *
arch_get_str(struct arch_loader *ld, const char *suffix)
{
	char key[160];
	return gguf_get_str(ld->f, key_of(ld, suffix, key, sizeof(key)));
}

int64_t
arch_int_array(const struct gguf_kv *kv)
{
	if (kv->val.type != GGUF_VT_ARRAY)
		return -1;
	switch (kv->val.v.arr.type) {
	case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_UINT16: case GGUF_VT_INT16: case GGUF_VT_UINT32:
	case GGUF_VT_INT32: case GGUF_VT_UINT64: case GGUF_VT_INT64: case GGUF_VT_BOOL:
		return kv->val.v.arr.n > INT64_MAX ? -1 : (int64_t)kv->val.v.arr.n;
	default:
		return -1;
	}
}

int
arch_set_sliding(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer,
		 int def_period, float base_swa, float scale_swa)
{
	char key[160];
	const struct gguf_kv *kv;
	int period = def_period;

	key_of(ld, "attention.sliding_window_pattern", key, sizeof(key));
	kv = gguf_find_kv(ld->f, key);
	if (kv && kv->val.type == GGUF_VT_ARRAY) {
		if (arch_int_array(kv) != hp->n_layer) {
			snprintf(ld->err, ld->errlen, "%s: %s must hold one flag per layer (%d)", ld->f->path, key,
			    hp->n_layer);
			return -1;
		}
		period = -1;
	} else if (kv && arch_get_int(ld, "attention.sliding_window_pattern", 0, def_period, &period) < 0) {
		return -1;
	}
	for (int il = 0; il < hp->n_layer; il++) {
		int slides = period < 0 ? gguf_arr_i64(&kv->val, il) != 0 :
		    period == 0 || il % period < period - 1;
		if (!slides)
			continue;
		layer[il].kind = LLM_LAYER_SLIDING;
		layer[il].window = hp->window;
		layer[il].rope_base = base_swa;
		layer[il].rope_scale = scale_swa;
	}
	return 0;
}

/* The keys every architecture shares, with llama.cpp's defaults. */
static int
load_common(struct arch_loader *ld, struct llm_hparams *hp)
{
	char *stype;
	float factor;
	int gating = 1;

	if (arch_get_int(ld, "context_length", 0, 2048, &hp->n_ctx_train) < 0 ||
	    arch_get_int(ld, "embedding_length", 1, 0, &hp->n_embd) < 0 ||
	    arch_get_int(ld, "block_count", 1, 0, &hp->n_layer) < 0 ||
	    arch_get_int(ld, "feed_forward_length", 0, 0, &hp->n_ff) < 0 ||
	    arch_get_int(ld, "attention.head_count", 1, 0, &hp->n_head) < 0 ||
	    arch_get_int(ld, "attention.head_count_kv", 0, hp->n_head, &hp->n_head_kv) < 0)
		return -1;
	if (hp->n_embd < 1 || hp->n_embd > 65536 || hp->n_layer < 1 || hp->n_layer > 1024 ||
	    hp->n_head < 1 || hp->n_head > 1024 || hp->n_head_kv < 1 || hp->n_head % hp->n_head_kv != 0 ||
	    hp->n_ff > 1 << 20) {
		snprintf(ld->err, ld->errlen, "%s: inconsistent hyperparameters (n_embd %d, layers %d, heads %d, "
		    "KV heads %d, n_ff %d)", ld->f->path, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff);
		return -1;
	}
	if (arch_get_int(ld, "attention.key_length", 0, hp->n_embd / hp->n_head, &hp->head_dim) < 0 ||
	    arch_get_int(ld, "attention.value_length", 0, hp->head_dim, &hp->head_dim_v) < 0)
		return -1;
	if (hp->head_dim < 1 || hp->head_dim > 1024 || hp->head_dim_v < 1 || hp->head_dim_v > 1024) {
		snprintf(ld->err, ld->errlen, "%s: head dimension %d (value %d) is not supported", ld->f->path,
		    hp->head_dim, hp->head_dim_v);
		return -1;
	}
	if (arch_get_float(ld, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps) < 0 ||
	    arch_get_float(ld, "rope.freq_base", 10000.0f, &hp->rope_base) < 0 ||
	    arch_get_int(ld, "rope.dimension_count", 0, hp->head_dim, &hp->rope_dim) < 0 ||
	    arch_get_float(ld, "rope.scaling.attn_factor", 1.0f, &hp->rope_attn_factor) < 0 ||
	    arch_get_int(ld, "rope.scaling.original_context_length", 0, hp->n_ctx_train, &hp->rope_n_ctx_orig) < 0 ||
	    arch_get_int(ld, "attention.sliding_window", 0, 0, &hp->window) < 0 ||
	    arch_get_float(ld, "attn_logit_softcapping", 0.0f, &hp->attn_softcap) < 0 ||
	    arch_get_float(ld, "final_logit_softcapping", 0.0f, &hp->final_softcap) < 0 ||
	    arch_get_int(ld, "expert_count", 0, 0, &hp->n_expert) < 0 ||
	    arch_get_int(ld, "expert_used_count", 0, 0, &hp->n_expert_used) < 0 ||
	    arch_get_int(ld, "expert_feed_forward_length", 0, hp->n_ff, &hp->n_ff_exp) < 0 ||
	    arch_get_int(ld, "expert_shared_feed_forward_length", 0, hp->n_ff, &hp->n_ff_shexp) < 0 ||
	    arch_get_bool(ld, "expert_weights_norm", 1, &hp->expert_norm) < 0 ||
	    arch_get_int(ld, "expert_gating_func", 0, 1, &gating) < 0)
		return -1;
	if (gating != 1) {
		snprintf(ld->err, ld->errlen, "%s: expert gating function %d is not supported (natter routes "
		    "experts by softmax)", ld->f->path, gating);
		return -1;
	}
	hp->rope_scale = 1.0f;
	stype = arch_get_str(ld, "rope.scaling.type");
	if (arch_get_float(ld, "rope.scaling.factor", 0.0f, &factor) < 0) {
		free(stype);
		return -1;
	}
	/* Linear scaling only; other kinds (YaRN) are not applied, as before. */
	if (stype && strcmp(stype, "linear") == 0 && factor > 0)
		hp->rope_scale = 1.0f / factor;
	free(stype);
	hp->rope_neox = 1;
	hp->ffn_act = LLM_FFN_SILU;
	hp->embd_scale = 1.0f;
	hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
	return 0;
}

/* X is a number over 0 that float holds (1 / 1e-40 is infinite). */
static int finite_pos(float x) { return x > 0 && isfinite(x); }

/* What no architecture may get wrong, checked once after its own keys. */
static int
check_hparams(struct arch_loader *ld, const struct llm_hparams *hp, const struct llm_layer_hparams *layer)
{
	int dense = 0, moe = 0, shexp = 0;

	if (hp->rope_dim < 2 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2) {
		snprintf(ld->err, ld->errlen, "%s: rope.dimension_count %d does not fit head dimension %d",
		    ld->f->path, hp->rope_dim, hp->head_dim);
		return -1;
	}
	if (!(hp->rms_eps > 0) || hp->rms_eps > 1 || !finite_pos(hp->rope_attn_factor) ||
	    !(hp->attn_softcap >= 0) || !isfinite(hp->attn_softcap) || !(hp->final_softcap >= 0) ||
	    !isfinite(hp->final_softcap) || !finite_pos(hp->attn_scale) || !finite_pos(hp->embd_scale)) {
		snprintf(ld->err, ld->errlen, "%s: RMSNorm epsilon, RoPE attention factor, soft-caps or scales "
		    "out of range", ld->f->path);
		return -1;
	}
	for (int il = 0; il < hp->n_layer; il++) {
		const struct llm_layer_hparams *l = &layer[il];
		if (!finite_pos(l->rope_base) || !finite_pos(l->rope_scale)) {
			snprintf(ld->err, ld->errlen, "%s: layer %d: RoPE base %g or scale %g out of range",
			    ld->f->path, il, l->rope_base, l->rope_scale);
			return -1;
		}
		if (l->kind == LLM_LAYER_SLIDING && (l->window < 1 || l->window > 1 << 24)) {
			snprintf(ld->err, ld->errlen, "%s: layer %d slides over a window of %d positions",
			    ld->f->path, il, l->window);
			return -1;
		}
		if (l->kind == LLM_LAYER_RECURRENT && l->state_floats == 0) {
			snprintf(ld->err, ld->errlen, "%s: layer %d is recurrent but its state has no size",
			    ld->f->path, il);
			return -1;
		}
		if (l->flags & LLM_LAYER_MOE)
			moe = 1;
		else
			dense = 1;
		if (l->flags & LLM_LAYER_SHARED_EXPERT)
			shexp = 1;
	}
	if (dense && hp->n_ff < 1) {
		snprintf(ld->err, ld->errlen, "%s: feed_forward_length is missing or 0", ld->f->path);
		return -1;
	}
	if (moe && (hp->n_expert < 1 || hp->n_expert > 1024 || hp->n_expert_used < 1 ||
	    hp->n_expert_used > hp->n_expert || hp->n_ff_exp < 1 || hp->n_ff_exp > 1 << 20)) {
		snprintf(ld->err, ld->errlen, "%s: inconsistent experts (%d, %d used, n_ff %d)", ld->f->path,
		    hp->n_expert, hp->n_expert_used, hp->n_ff_exp);
		return -1;
	}
	if (shexp && (hp->n_ff_shexp < 1 || hp->n_ff_shexp > 1 << 20)) {
		snprintf(ld->err, ld->errlen, "%s: the shared expert's length %d is out of range", ld->f->path,
		    hp->n_ff_shexp);
		return -1;
	}
	return 0;
}

/* Whether D's table has a tensor of flag FLAG. */
static int
table_has(const struct arch_desc *d, unsigned flag)
{
	for (int i = 0; i < d->n_tensors; i++)
		if (d->tensors[i].flags & flag)
			return 1;
	return 0;
}

int
arch_load_hparams(struct arch_loader *ld, const struct arch_desc *d, struct llm_hparams *hp,
		  struct llm_layer_hparams **layer)
{
	struct llm_layer_hparams *l;

	*layer = NULL;
	snprintf(hp->arch_name, sizeof(hp->arch_name), "%s", d->name);
	if (load_common(ld, hp) < 0)
		return -1;
	l = calloc(hp->n_layer, sizeof(*l));
	if (!l) {
		snprintf(ld->err, ld->errlen, "%s: out of memory", ld->f->path);
		return -1;
	}
	*layer = l;
	/* Experts only where the architecture has them: expert keys in a
	 * dense family's file are ignored, as llama.cpp ignores them (the
	 * layers would otherwise run an FFN of no tensors, or one of the
	 * wrong width).  A family of experts only needs them. */
	if (!table_has(d, AT_MOE))
		hp->n_expert = hp->n_expert_used = 0;
	else if (!table_has(d, AT_DENSE) && hp->n_expert < 1) {
		snprintf(ld->err, ld->errlen, "%s: %s.expert_count is missing or 0, and a %s model has experts in every "
		    "layer", ld->f->path, d->name, d->name);
		return -1;
	}
	for (int il = 0; il < hp->n_layer; il++) {
		l[il].kind = LLM_LAYER_FULL;
		l[il].rope_base = hp->rope_base;
		l[il].rope_scale = hp->rope_scale;
		if (hp->n_expert > 0)
			l[il].flags |= LLM_LAYER_MOE;
	}
	if (d->hparams && d->hparams(ld, hp, l) < 0)
		return -1;
	hp->layer = l;
	return check_hparams(ld, hp, l);
}

/* --- binding tensors --- */

static int64_t
dim_value(const struct llm_hparams *hp, enum arch_dim d)
{
	const int64_t Q = (int64_t)hp->n_head * hp->head_dim, K = (int64_t)hp->n_head_kv * hp->head_dim;
	const int64_t V = (int64_t)hp->n_head_kv * hp->head_dim_v;

	switch (d) {
	case D_1: return 1;
	case D_EMBD: return hp->n_embd;
	case D_VOCAB: return hp->n_vocab;
	case D_Q: return Q;
	case D_K: return K;
	case D_V: return V;
	case D_QKV: return Q + K + V;
	case D_ATTN_OUT: return (int64_t)hp->n_head * hp->head_dim_v;
	case D_HEAD: return hp->head_dim;
	case D_FF: return hp->n_ff;
	case D_FF2: return 2 * (int64_t)hp->n_ff;
	case D_FF_EXP: return hp->n_ff_exp;
	case D_FF_SHEXP: return hp->n_ff_shexp;
	case D_EXPERT: return hp->n_expert;
	case D_ROPE_HALF: return hp->rope_dim / 2;
	case D_Q2: return 2 * Q;
	case D_EMBD2: return 2 * (int64_t)hp->n_embd;
	case D_DN_QKV: return 2 * (int64_t)hp->ssm_n_group * hp->ssm_d_state + hp->ssm_d_inner;
	case D_DN_INNER: return hp->ssm_d_inner;
	case D_DN_HV: return hp->ssm_dt_rank;
	case D_DN_DV: return hp->ssm_dt_rank ? hp->ssm_d_inner / hp->ssm_dt_rank : 0;
	case D_DN_CONV: return hp->ssm_d_conv;
	}
	return 0;
}

static void
supported_types(char *buf, size_t n)
{
	size_t len = 0;

	buf[0] = 0;
	for (int t = 0; t < GGML_TYPE_COUNT && len < n; t++)
		if (q_traits_get(t)->supported)
			len += snprintf(buf + len, n - len, "%s%s", len ? " " : "", ggml_type_info_get(t)->name);
}

/* Binds NAME (with SUFFIX) into T after checking its shape NE and type. */
static int
bind_one(const struct llm_model *m, struct ltensor *t, const char *name, const int64_t ne[3],
	 int rope_half, int f32, char *err, size_t errlen)
{
	const struct gguf_tensor *g = gguf_find_tensor(m->f, name);
	int64_t n0 = ne[0];

	memset(t, 0, sizeof(*t));
	if (!g)
		return 1;
	/* Frequency factors: rope_dim/2 entries, or head_dim/2 of which the
	 * first rope_dim/2 are used (both are written by converters). */
	if (rope_half && g->ne[0] == (uint64_t)m->hp.head_dim / 2)
		n0 = m->hp.head_dim / 2;
	if (g->ne[0] != (uint64_t)n0 || g->ne[1] != (uint64_t)ne[1] || g->ne[2] != (uint64_t)ne[2] ||
	    g->ne[3] != 1) {
		snprintf(err, errlen, "%s: tensor %s has shape [%llu, %llu, %llu, %llu], expected [%lld, %lld, %lld]",
		    m->f->path, name, (unsigned long long)g->ne[0], (unsigned long long)g->ne[1],
		    (unsigned long long)g->ne[2], (unsigned long long)g->ne[3], (long long)n0, (long long)ne[1],
		    (long long)ne[2]);
		return -1;
	}
	if (!q_traits_get(g->type)->supported) {
		char list[256];
		supported_types(list, sizeof(list));
		snprintf(err, errlen, "%s: tensor %s has type %s, which natter does not support (supported: %s)",
		    m->f->path, name, ggml_type_info_get(g->type)->name, list);
		return -1;
	}
	if (f32 && g->type != GGML_TYPE_F32) {
		snprintf(err, errlen, "%s: tensor %s must be F32 (it is %s)", m->f->path, name,
		    ggml_type_info_get(g->type)->name);
		return -1;
	}
	t->data = g->data;
	t->type = g->type;
	t->ne0 = n0;
	t->ne1 = ne[1];
	t->ne2 = ne[2];
	t->row_bytes = q_row_size(g->type, n0);
	t->mat_bytes = t->row_bytes * (size_t)ne[1];
	return 0;
}

/* Whether layer L calls for a tensor with table flags TF. */
static int
wanted(unsigned tf, const struct llm_layer_hparams *l)
{
	const unsigned fl = l->flags;

	if ((tf & AT_RECUR) && l->kind != LLM_LAYER_RECURRENT)
		return 0;
	if ((tf & AT_ATTN) && l->kind == LLM_LAYER_RECURRENT)
		return 0;
	if ((tf & AT_MTP) && !(fl & LLM_LAYER_MTP))
		return 0;
	if ((tf & AT_DENSE) && (fl & LLM_LAYER_MOE))
		return 0;
	if ((tf & AT_MOE) && !(fl & LLM_LAYER_MOE))
		return 0;
	if ((tf & AT_SHEXP) && !(fl & LLM_LAYER_SHARED_EXPERT))
		return 0;
	if ((tf & AT_QK_NORM) && !(fl & LLM_LAYER_QK_NORM))
		return 0;
	if ((tf & AT_POST) && !(fl & LLM_LAYER_POST_NORMS))
		return 0;
	return 1;
}

static int
bind_entry(struct llm_model *m, const struct arch_tensor *e, int il, struct lweight *w, char *err, size_t errlen)
{
	char base[96], name[112];
	int64_t ne[3], bne[3] = { 0, 1, 1 };
	int rc;

	if (il >= 0)
		snprintf(base, sizeof(base), tensor_names[e->role], il);
	else
		snprintf(base, sizeof(base), "%s", tensor_names[e->role]);
	for (int i = 0; i < 3; i++)
		ne[i] = i > 0 && e->ne[i] == D_1 ? 1 : dim_value(&m->hp, e->ne[i]);
	w->layer = il;
	w->role = e->role;
	snprintf(name, sizeof(name), e->flags & AT_RAW ? "%s" : "%s.weight", base);
	rc = bind_one(m, &w->w, name, ne, e->ne[0] == D_ROPE_HALF, (e->flags & AT_F32) != 0, err, errlen);
	if (rc < 0)
		return -1;
	if (rc > 0 && !(e->flags & AT_OPTIONAL)) {
		snprintf(err, errlen, "%s: tensor %s is missing (a %s model needs it)", m->f->path, name,
		    m->hp.arch_name);
		return -1;
	}
	if (rc > 0 || !(e->flags & (AT_BIAS | AT_BIAS_OPT)))
		return 0;
	bne[0] = ne[1];
	snprintf(name, sizeof(name), "%s.bias", base);
	rc = bind_one(m, &w->b, name, bne, 0, 1, err, errlen);
	if (rc < 0)
		return -1;
	if (rc > 0 && (e->flags & AT_BIAS)) {
		snprintf(err, errlen, "%s: tensor %s is missing (a %s model needs it)", m->f->path, name,
		    m->hp.arch_name);
		return -1;
	}
	return 0;
}

int
arch_bind(struct llm_model *m, char *err, size_t errlen)
{
	const struct arch_desc *d = m->arch;
	const int n_block = m->hp.n_layer + m->hp.n_layer_mtp;

	for (int r = 0; r < LLM_TENSOR_COUNT; r++) {
		if (r < LLM_TENSOR_LAYER_FIRST) {
			m->g[r].layer = -1;
			m->g[r].role = r;
		}
		for (int il = 0; il < n_block; il++) {
			m->layers[il].t[r].layer = il;
			m->layers[il].t[r].role = r;
		}
	}
	for (int i = 0; i < d->n_tensors; i++) {
		const struct arch_tensor *e = &d->tensors[i];
		if (e->role < LLM_TENSOR_LAYER_FIRST) {
			if (bind_entry(m, e, -1, &m->g[e->role], err, errlen) < 0)
				return -1;
			continue;
		}
		for (int il = 0; il < n_block; il++)
			if (wanted(e->flags, &m->hp.layer[il]) &&
			    bind_entry(m, e, il, &m->layers[il].t[e->role], err, errlen) < 0)
				return -1;
	}
	/* A block the metadata does not count (block_count 1 of a file of
	 * 2 layers) would be left out silently: llama.cpp refuses such a
	 * file for its tensor count, and so does natter. */
	for (uint64_t i = 0; i < m->f->n_tensors; i++) {
		const struct gguf_str *nm = &m->f->tensors[i].name;
		uint64_t k = 4;
		long b = 0;
		if (nm->len < 6 || memcmp(nm->ptr, "blk.", 4) != 0)
			continue;
		while (k < nm->len && nm->ptr[k] >= '0' && nm->ptr[k] <= '9' && b < 1L << 30)
			b = b * 10 + (nm->ptr[k++] - '0');
		if (k > 4 && k < nm->len && nm->ptr[k] == '.' && b >= n_block) {
			snprintf(err, errlen, "%s: tensor %.*s is of block %ld, past the %d blocks its metadata "
			    "states (%s.block_count)", m->f->path, (int)(nm->len > 200 ? 200 : nm->len), nm->ptr, b,
			    n_block, d->name);
			return -1;
		}
	}
	/* Combinations a table cannot say. */
	for (int il = 0; il < n_block; il++) {
		const struct lweight *t = m->layers[il].t;
		if (!t[LLM_TENSOR_ATTN_QKV].w.data &&
		    !(t[LLM_TENSOR_ATTN_Q].w.data && t[LLM_TENSOR_ATTN_K].w.data && t[LLM_TENSOR_ATTN_V].w.data)) {
			snprintf(err, errlen, "%s: layer %d has neither attn_qkv nor attn_q, attn_k and attn_v",
			    m->f->path, il);
			return -1;
		}
	}
	if (!m->g[LLM_TENSOR_OUTPUT].w.data) {
		/* Tied embeddings: the output projection reuses token_embd. */
		m->g[LLM_TENSOR_OUTPUT].w = m->g[LLM_TENSOR_TOKEN_EMBD].w;
	}
	m->hp.rope_factors = m->g[LLM_TENSOR_ROPE_FACTORS_LONG].w.data ? 2 :
	    m->g[LLM_TENSOR_ROPE_FREQS].w.data ? 1 : 0;
	if (!m->g[LLM_TENSOR_ROPE_FACTORS_LONG].w.data != !m->g[LLM_TENSOR_ROPE_FACTORS_SHORT].w.data) {
		/* Either set alone would leave some contexts without factors. */
		snprintf(err, errlen, "%s: %s.weight without %s.weight", m->f->path,
		    m->g[LLM_TENSOR_ROPE_FACTORS_LONG].w.data ? "rope_factors_long" : "rope_factors_short",
		    m->g[LLM_TENSOR_ROPE_FACTORS_LONG].w.data ? "rope_factors_short" : "rope_factors_long");
		return -1;
	}
	return 0;
}
