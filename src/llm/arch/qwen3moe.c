/* qwen3moe.c -- Qwen3 mixture of experts: Qwen3 attention, softmax top-k routing with renormalised weights. */
#include "config.h"

#include "llm/arch.h"

/* Every layer routes (the shared keys mark them); expert_weights_norm
 * defaults to renormalising (Qwen3-MoE's norm_topk_prob); without
 * expert_feed_forward_length an expert is n_ff / expert_used_count wide. */
static int
qwen3moe_hparams(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer)
{
	if (hp->n_expert_used > 0 &&
	    arch_get_int(ld, "expert_feed_forward_length", 0, hp->n_ff / hp->n_expert_used, &hp->n_ff_exp) < 0)
		return -1;
	for (int il = 0; il < hp->n_layer; il++)
		layer[il].flags |= LLM_LAYER_QK_NORM;
	return 0;
}

static const struct arch_tensor qwen3moe_tensors[] = {
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
	{ LLM_TENSOR_FFN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_FFN_GATE, { D_EMBD, D_FF }, AT_DENSE },
	{ LLM_TENSOR_FFN_UP, { D_EMBD, D_FF }, AT_DENSE },
	{ LLM_TENSOR_FFN_DOWN, { D_FF, D_EMBD }, AT_DENSE },
	{ LLM_TENSOR_FFN_GATE_INP, { D_EMBD, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_GATE_EXPS, { D_EMBD, D_FF_EXP, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_UP_EXPS, { D_EMBD, D_FF_EXP, D_EXPERT }, AT_MOE },
	{ LLM_TENSOR_FFN_DOWN_EXPS, { D_FF_EXP, D_EMBD, D_EXPERT }, AT_MOE },
};

const struct arch_desc arch_qwen3moe = {
	"qwen3moe", "Qwen3 MoE (30B-A3B, 235B-A22B)",
	qwen3moe_hparams, ARCH_TENSORS(qwen3moe_tensors), NULL, 0,
};
