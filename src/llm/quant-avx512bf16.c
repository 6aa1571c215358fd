/* quant-avx512bf16.c -- the avx512bf16 tier: the x86 kernels (quant-x86.h) built for AVX-512 F/BW/VL/DQ, VNNI and BF16. */
#include "config.h"

#define QX_KERN q_kern_avx512bf16
#define QX_NAME "avx512bf16"
#if !defined(NATTER_NO_SIMD) \
    && defined(__AVX512F__) \
    && defined(__AVX512BW__) \
    && defined(__AVX512VL__) \
    && defined(__AVX512DQ__) \
    && defined(__AVX512VNNI__) \
    && defined(__AVX512BF16__) \
    && defined(__FMA__) \
    && defined(__F16C__)
#define QX_BUILD 1
#endif
#include "llm/quant-x86.h"
