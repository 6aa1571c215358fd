/* qwen2.c -- Qwen2 and Qwen2.5: q/k/v biases, NeoX RoPE, tied embeddings in the small sizes. */
#include "config.h"

#include "llm/arch.h"

static const struct arch_tensor qwen2_tensors[] = {
	{ LLM_TENSOR_TOKEN_EMBD, { D_EMBD, D_VOCAB }, 0 },
	{ LLM_TENSOR_OUTPUT_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_OUTPUT, { D_EMBD, D_VOCAB }, AT_OPTIONAL },
	{ LLM_TENSOR_ATTN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_ATTN_Q, { D_EMBD, D_Q }, AT_BIAS },
	{ LLM_TENSOR_ATTN_K, { D_EMBD, D_K }, AT_BIAS },
	{ LLM_TENSOR_ATTN_V, { D_EMBD, D_V }, AT_BIAS },
	{ LLM_TENSOR_ATTN_OUT, { D_ATTN_OUT, D_EMBD }, 0 },
	{ LLM_TENSOR_FFN_NORM, { D_EMBD }, AT_F32 },
	{ LLM_TENSOR_FFN_GATE, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_UP, { D_EMBD, D_FF }, 0 },
	{ LLM_TENSOR_FFN_DOWN, { D_FF, D_EMBD }, 0 },
};

const struct arch_desc arch_qwen2 = {
	"qwen2", "Qwen2, Qwen2.5", NULL, ARCH_TENSORS(qwen2_tensors), NULL, 0,
};
