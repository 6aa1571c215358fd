/* qwen3.c -- Qwen3 (dense): per-head q/k RMSNorm before RoPE; n_head x head_dim need not be n_embd. */
#include "config.h"

#include "llm/arch.h"

/* attention.key_length gives head_dim (the shared keys read it); every
 * layer normalises q and k per head with plain weights. */
static int
qwen3_hparams(struct arch_loader *ld, struct llm_hparams *hp, struct llm_layer_hparams *layer)
{
	(void)ld;
	for (int il = 0; il < hp->n_layer; il++)
		layer[il].flags |= LLM_LAYER_QK_NORM;
	return 0;
}

static const struct arch_tensor qwen3_tensors[] = {
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
	{ LLM_TENSOR_FFN_GATE, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_UP, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_DOWN, { D_FF, D_EMBD }, 0 },
};

const struct arch_desc arch_qwen3 = {
	"qwen3", "Qwen3 (dense)", qwen3_hparams, ARCH_TENSORS(qwen3_tensors), NULL, 0,
};
