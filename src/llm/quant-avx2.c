/* quant-avx2.c -- the avx2 tier: the x86 kernels (quant-x86.h) built for AVX2, FMA and F16C. */
#include "config.h"

#define QX_KERN q_kern_avx2
#define QX_NAME "avx2"
#if !defined(NATTER_NO_SIMD) \
    && defined(__AVX2__) \
    && defined(__FMA__) \
    && defined(__F16C__)
#define QX_BUILD 1
#endif
#include "llm/quant-x86.h"
