/* gemma3.c -- Gemma 3 (text): Gemma 2's block with q/k norms, no soft-caps, five local layers to one global. */
#include "config.h"

#include <math.h>

#include "llm/arch.h"

/*
 * Layer il is global when il % 6 == 5 (or as attention.sliding_window_pattern
 * says); local layers slide over attention.sliding_window positions with
 * RoPE base rope.freq_base_swa (10000 when absent) and no scaling, global
 * ones use rope.freq_base and the file's linear scaling.  No window key:
 * every layer global.  Query scale 1/sqrt(key_length), except the
 * 62-layer 27B: 1/sqrt(n_embd / n_head).  Soft-caps only if the file has them.
 */
static int
gemma3_hparams(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer)
{
	float base_swa;

	if (arch_get_float(ld, "rope.freq_base_swa", 10000.0f, &base_swa) < 0)
		return -1;
	hp->embd_scale = sqrtf((float)hp->n_embd);
	hp->ffn_act = LLM_FFN_GELU_TANH;
	hp->attn_scale = 1.0f / sqrtf((float)(hp->n_layer == 62 ? hp->n_embd / hp->n_head : hp->head_dim));
	for (int il = 0; il < hp->n_layer; il++)
		layer[il].flags |= LLM_LAYER_POST_NORMS | LLM_LAYER_QK_NORM;
	if (hp->window > 0)
		return arch_set_sliding(ld, hp, layer, 6, base_swa, 1.0f);
	return 0;
}

static const struct arch_tensor gemma3_tensors[] = {
	{ LLM_TENSOR_TOKEN_EMBD, { D_EMBD, D_VOCAB }, 0 },
	{ LLM_TENSOR_OUTPUT_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_OUTPUT, { D_EMBD, D_VOCAB }, AT_OPTIONAL },
	{ LLM_TENSOR_ATTN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_ATTN_Q, { D_EMBD, D_Q }, 0 },
	{ LLM_TENSOR_ATTN_K, { D_EMBD, D_K }, 0 },
	{ LLM_TENSOR_ATTN_V, { D_EMBD, D_V }, 0 },
	{ LLM_TENSOR_ATTN_Q_NORM, { D_HEAD }, AT_F32 | AT_QK_NORM },
	{ LLM_TENSOR_ATTN_K_NORM, { D_HEAD }, AT_F32 | AT_QK_NORM },
	{ LLM_TENSOR_ATTN_OUT, { D_ATTN_OUT, D_EMBD }, 0 },
	{ LLM_TENSOR_ATTN_POST_NORM, { D_EMBD }, AT_F32 | AT_POST },
	{ LLM_TENSOR_FFN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_FFN_GATE, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_UP, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_DOWN, { D_FF, D_EMBD }, 0 },
	{ LLM_TENSOR_FFN_POST_NORM, { D_EMBD }, AT_F32 | AT_POST },
};

const struct arch_desc arch_gemma3 = {
	"gemma3", "Gemma 3 (text; 270M, 1B, 4B, 12B, 27B)", gemma3_hparams, ARCH_TENSORS(gemma3_tensors), NULL, 0,
};
