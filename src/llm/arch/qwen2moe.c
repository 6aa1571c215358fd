/* qwen2moe.c -- Qwen1.5-MoE, Qwen2-MoE: raw softmax weights of the top k, plus a sigmoid-gated shared expert. */
#include "config.h"

#include "llm/arch.h"

/* Routed weights are not renormalised unless expert_weights_norm says so;
 * every layer also has the shared expert. */
static int
qwen2moe_hparams(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer)
{
	if (arch_get_bool(ld, "expert_weights_norm", 0, &hp->expert_norm) < 0)
		return -1;
	if (hp->n_expert_used > 0 &&
	    arch_get_int(ld, "expert_feed_forward_length", 0, hp->n_ff / hp->n_expert_used, &hp->n_ff_exp) < 0)
		return -1;
	for (int il = 0; il < hp->n_layer; il++)
		if (layer[il].flags & LLM_LAYER_MOE)
			layer[il].flags |= LLM_LAYER_SHARED_EXPERT;
	return 0;
}

static const struct arch_tensor qwen2moe_tensors[] = {
	{ LLM_TENSOR_TOKEN_EMBD, { D_EMBD, D_VOCAB }, 0 },
	{ LLM_TENSOR_OUTPUT_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_OUTPUT, { D_EMBD, D_VOCAB }, AT_OPTIONAL },
	{ LLM_TENSOR_ATTN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_ATTN_Q, { D_EMBD, D_Q }, AT_BIAS },
	{ LLM_TENSOR_ATTN_K, { D_EMBD, D_K }, AT_BIAS },
	{ LLM_TENSOR_ATTN_V, { D_EMBD, D_V }, AT_BIAS },
	{ LLM_TENSOR_ATTN_OUT, { D_ATTN_OUT, D_EMBD }, 0 },
	{ LLM_TENSOR_FFN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_FFN_GATE_INP, { D_EMBD, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_GATE_EXPS, { D_EMBD, D_FF_EXP, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_UP_EXPS, { D_EMBD, D_FF_EXP, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_DOWN_EXPS, { D_FF_EXP, D_EMBD, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_GATE_INP_SHEXP, { D_EMBD }, AT_SHEXP },
	{ LLM_TENSOR_FFN_GATE_SHEXP, { D_EMBD, D_FF_SHEXP }, AT_SHEXP },
	{ LLM_TENSOR_FFN_UP_SHEXP, { D_EMBD, D_FF_SHEXP }, AT_SHEXP },
	{ LLM_TENSOR_FFN_DOWN_SHEXP, { D_FF_SHEXP, D_EMBD }, AT_SHEXP },
};

const struct arch_desc arch_qwen2moe = {
	"qwen2moe", "Qwen1.5-MoE, Qwen2-MoE",
	qwen2moe_hparams, ARCH_TENSORS(qwen2moe_tensors), NULL, 0,
};
