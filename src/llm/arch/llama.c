/* llama.c -- Llama 1-3, Mistral, TinyLlama, SmolLM; with experts, Mixtral. */
#include "config.h"

#include "llm/arch.h"

/* Adjacent-pair RoPE; a file with expert_count is a mixture of experts
 * (the shared keys already mark its layers), routed by softmax over all
 * experts, top expert_used_count, weights renormalised. */
static int
llama_hparams(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer)
{
	(void)ld;
	(void)layer;
	hp->rope_neox = 0;
	return 0;
}

static const struct arch_tensor llama_tensors[] = {
	{ LLM_TENSOR_TOKEN_EMBD, { D_EMBD, D_VOCAB }, 0 },
	{ LLM_TENSOR_OUTPUT_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_OUTPUT, { D_EMBD, D_VOCAB }, AT_OPTIONAL | AT_BIAS_OPT },
	{ LLM_TENSOR_ROPE_FREQS, { D_ROPE_HALF }, AT_OPTIONAL | AT_F32 },
	{ LLM_TENSOR_ATTN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_ATTN_Q, { D_EMBD, D_Q }, AT_BIAS_OPT },
	{ LLM_TENSOR_ATTN_K, { D_EMBD, D_K }, AT_BIAS_OPT },
	{ LLM_TENSOR_ATTN_V, { D_EMBD, D_V }, AT_BIAS_OPT },
	{ LLM_TENSOR_ATTN_OUT, { D_ATTN_OUT, D_EMBD }, AT_BIAS_OPT },
	{ LLM_TENSOR_FFN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_FFN_GATE, { D_EMBD, D_FF }, AT_DENSE },
	{ LLM_TENSOR_FFN_UP, { D_EMBD, D_FF }, AT_DENSE },
	{ LLM_TENSOR_FFN_DOWN, { D_FF, D_EMBD }, AT_DENSE },
	{ LLM_TENSOR_FFN_GATE_INP, { D_EMBD, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_GATE_EXPS, { D_EMBD, D_FF_EXP, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_UP_EXPS, { D_EMBD, D_FF_EXP, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_DOWN_EXPS, { D_FF_EXP, D_EMBD, D_EXPERT }, AT_MOE },
};

const struct arch_desc arch_llama = {
	"llama", "Llama 1-3, Mistral, TinyLlama, SmolLM; Mixtral (experts)",
	llama_hparams, ARCH_TENSORS(llama_tensors), NULL, 0,
};
