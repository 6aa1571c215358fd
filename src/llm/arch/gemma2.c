/* gemma2.c -- Gemma 2: scaled embeddings, sandwich norms, GELU-tanh, soft-capping, every other layer sliding. */
#include "config.h"

#include <math.h>

#include "llm/arch.h"

/*
 * Defaults as llama.cpp's: soft-caps 50 (attention) and 30 (logits), a
 * window of 4096 on the even layers (attention.sliding_window_pattern may
 * say otherwise), same RoPE everywhere.  Query scale 1/sqrt(key_length),
 * except the 46-layer 27B which uses 1/sqrt(n_embd / n_head).
 */
static int
gemma2_hparams(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer)
{
	if (arch_get_float(ld, "attn_logit_softcapping", 50.0f, &hp->attn_softcap) < 0 ||
	    arch_get_float(ld, "final_logit_softcapping", 30.0f, &hp->final_softcap) < 0 ||
	    arch_get_int(ld, "attention.sliding_window", 0, 4096, &hp->window) < 0)
		return -1;
	hp->embd_scale = sqrtf((float)hp->n_embd);
	hp->ffn_act = LLM_FFN_GELU_TANH;
	hp->attn_scale = 1.0f / sqrtf((float)(hp->n_layer == 46 ? hp->n_embd / hp->n_head : hp->head_dim));
	for (int il = 0; il < hp->n_layer; il++)
		layer[il].flags |= LLM_LAYER_POST_NORMS;
	if (hp->window > 0)
		return arch_set_sliding(ld, hp, layer, 2, hp->rope_base, hp->rope_scale);
	return 0;
}

static const struct arch_tensor gemma2_tensors[] = {
	{ LLM_TENSOR_TOKEN_EMBD, { D_EMBD, D_VOCAB }, 0 },
	{ LLM_TENSOR_OUTPUT_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_OUTPUT, { D_EMBD, D_VOCAB }, AT_OPTIONAL },
	{ LLM_TENSOR_ATTN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_ATTN_Q, { D_EMBD, D_Q }, 0 },
	{ LLM_TENSOR_ATTN_K, { D_EMBD, D_K }, 0 },
	{ LLM_TENSOR_ATTN_V, { D_EMBD, D_V }, 0 },
	{ LLM_TENSOR_ATTN_OUT, { D_ATTN_OUT, D_EMBD }, 0 },
	{ LLM_TENSOR_ATTN_POST_NORM, { D_EMBD }, AT_F32 | AT_POST },
	{ LLM_TENSOR_FFN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_FFN_GATE, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_UP, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_DOWN, { D_FF, D_EMBD }, 0 },
	{ LLM_TENSOR_FFN_POST_NORM, { D_EMBD }, AT_F32 | AT_POST },
};

const struct arch_desc arch_gemma2 = {
	"gemma2", "Gemma 2 (2B, 9B, 27B)", gemma2_hparams, ARCH_TENSORS(gemma2_tensors), NULL, 0,
};
