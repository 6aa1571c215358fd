/* phi3.c -- Phi-3, Phi-3.5-mini, Phi-4-mini: fused qkv and gate/up, partial rotary, LongRoPE. */
#include "config.h"

#include "llm/arch.h"

/*
 * The shared keys hold what is Phi's: rope.dimension_count (partial
 * rotary), rope.scaling.attn_factor and original_context_length
 * (LongRoPE; the factor tensors are below).  attention.sliding_window,
 * when present, applies to every layer, as llama.cpp applies it.
 */
static int
phi3_hparams(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer)
{
	if (hp->window > 0)
		return arch_set_sliding(ld, hp, layer, 0, hp->rope_base, hp->rope_scale);
	return 0;
}

static const struct arch_tensor phi3_tensors[] = {
	{ LLM_TENSOR_TOKEN_EMBD, { D_EMBD, D_VOCAB }, 0 },
	{ LLM_TENSOR_OUTPUT_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_OUTPUT, { D_EMBD, D_VOCAB }, AT_OPTIONAL | AT_BIAS_OPT },
	{ LLM_TENSOR_ROPE_FACTORS_LONG, { D_ROPE_HALF }, AT_OPTIONAL | AT_F32 },
	{ LLM_TENSOR_ROPE_FACTORS_SHORT, { D_ROPE_HALF }, AT_OPTIONAL | AT_F32 },
	{ LLM_TENSOR_ATTN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_ATTN_QKV, { D_EMBD, D_QKV }, AT_OPTIONAL | AT_BIAS_OPT },
	{ LLM_TENSOR_ATTN_Q, { D_EMBD, D_Q }, AT_OPTIONAL },
	{ LLM_TENSOR_ATTN_K, { D_EMBD, D_K }, AT_OPTIONAL },
	{ LLM_TENSOR_ATTN_V, { D_EMBD, D_V }, AT_OPTIONAL },
	{ LLM_TENSOR_ATTN_OUT, { D_ATTN_OUT, D_EMBD }, AT_BIAS_OPT },
	{ LLM_TENSOR_FFN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_FFN_UP, { D_EMBD, D_FF2 }, 0 },     /* gate, then up */
	{ LLM_TENSOR_FFN_DOWN, { D_FF, D_EMBD }, 0 },
};

const struct arch_desc arch_phi3 = {
	"phi3", "Phi-3, Phi-3.5-mini, Phi-4-mini",
	phi3_hparams, ARCH_TENSORS(phi3_tensors), NULL, 0,
};
