/* quant-avx512.c -- the avx512 tier: the x86 kernels (quant-x86.h) built for AVX-512 F/BW/VL/DQ (maddubs int8 products). */
#include "config.h"

#define QX_KERN q_kern_avx512
#define QX_NAME "avx512"
#if !defined(NATTER_NO_SIMD) \
    && defined(__AVX512F__) \
    && defined(__AVX512BW__) \
    && defined(__AVX512VL__) \
    && defined(__AVX512DQ__) \
    && defined(__FMA__) \
    && defined(__F16C__)
#define QX_BUILD 1
#endif
#include "llm/quant-x86.h"
