/* quant-avxvnni.c -- the avxvnni tier: the x86 kernels (quant-x86.h) built for AVX2, FMA, F16C and AVX-VNNI (256-bit vpdpbusd). */
#include "config.h"

#define QX_KERN q_kern_avxvnni
#define QX_NAME "avxvnni"
#if !defined(NATTER_NO_SIMD) \
    && defined(__AVX2__) \
    && defined(__FMA__) \
    && defined(__F16C__) \
    && defined(__AVXVNNI__)
#define QX_BUILD 1
#endif
#include "llm/quant-x86.h"
