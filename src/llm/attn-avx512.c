/* attn-avx512.c -- attention's avx512 tier: the kernels of attn-x86.h sixteen floats at a time, built for AVX-512 F/BW/VL (and F16C). */
#include "config.h"

#define AX_OPS attn_avx512_ops
#define AX_NAME "avx512"
#define AX_CPU_TIER CPU_AVX512   /* the CPU has it when it has that kernel tier */
#if !defined(NATTER_NO_SIMD) \
    && defined(__AVX512F__) \
    && defined(__AVX512BW__) \
    && defined(__AVX512VL__) \
    && defined(__F16C__)
#define AX_BUILD 1
#endif
#include "llm/attn-x86.h"
