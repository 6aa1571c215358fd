/* quant-avx512vnni.c -- the avx512vnni tier: the x86 kernels (quant-x86.h) built for AVX-512 F/BW/VL/DQ and VNNI. */
#include "config.h"

#define QX_KERN q_kern_avx512vnni
#define QX_NAME "avx512vnni"
#if !defined(NATTER_NO_SIMD) \
    && defined(__AVX512F__) \
    && defined(__AVX512BW__) \
    && defined(__AVX512VL__) \
    && defined(__AVX512DQ__) \
    && defined(__AVX512VNNI__) \
    && defined(__FMA__) \
    && defined(__F16C__)
#define QX_BUILD 1
#endif
#include "llm/quant-x86.h"
