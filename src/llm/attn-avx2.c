/* attn-avx2.c -- attention's avx2 tier: the kernels of attn-x86.h eight floats at a time, built for AVX2, FMA and F16C. */
#include "config.h"

#define AX_OPS attn_avx2_ops
#define AX_NAME "avx2"
#define AX_CPU_TIER CPU_AVX2   /* the CPU has it when it has that kernel tier */
#if !defined(NATTER_NO_SIMD) \
    && defined(__AVX2__) \
    && defined(__FMA__) \
    && defined(__F16C__)
#define AX_BUILD 1
#endif
#include "llm/attn-x86.h"
