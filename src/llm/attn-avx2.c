/* attn-avx2.c -- attention's avx2 tier: the kernels of attn-x86.h eight floats at a time, built for AVX2, FMA and F16C. */
#include "config.h"

#define AX_OPS attn_avx2_ops
#define AX_NAME "avx2"
#define AX_CPU_HAS() (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
#if !defined(NATTER_NO_SIMD) \
    && defined(__AVX2__) \
    && defined(__FMA__) \
    && defined(__F16C__)
#define AX_BUILD 1
#endif
#include "llm/attn-x86.h"
