/* quant-amx.c -- the amx tier: the avx512bf16 kernels (quant-x86.h) with the int8 GEMM on AMX tiles. */
#include "config.h"

#define QX_KERN q_kern_amx
#define QX_NAME "amx"
#if !defined(NATTER_NO_SIMD) \
    && defined(__AVX512F__) \
    && defined(__AVX512BW__) \
    && defined(__AVX512VL__) \
    && defined(__AVX512DQ__) \
    && defined(__AVX512VNNI__) \
    && defined(__AVX512BF16__) \
    && defined(__AMX_TILE__) \
    && defined(__AMX_INT8__) \
    && defined(__x86_64__) \
    && defined(__FMA__) \
    && defined(__F16C__)
#define QX_BUILD 1
#endif
#include "llm/quant-x86.h"
