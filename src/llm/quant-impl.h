/* quant-impl.h -- internals shared by the reference and SIMD kernel files. */
#ifndef NATTER_QUANT_IMPL_H
#define NATTER_QUANT_IMPL_H

#include "natter/quant.h"

extern struct q_traits q_traits_table[GGML_TYPE_COUNT];

/* A K-quant block decoded to integer levels:
 * x[e] = d * sc[e / sub] * q[e] - dmin * mn[e / sub]. */
struct kdec {
	int8_t q[QK_K];
	int16_t sc[16];
	int16_t mn[16];
	int sub;            /* 16 or 32 */
	float d, dmin;
};

void q_kdec_q2_K(const void *blk, struct kdec *k);
void q_kdec_q3_K(const void *blk, struct kdec *k);
void q_kdec_q4_K(const void *blk, struct kdec *k);
void q_kdec_q5_K(const void *blk, struct kdec *k);
void q_kdec_q6_K(const void *blk, struct kdec *k);
void q_q8_K_from_float_ref(const float *x, void *y, int64_t n);

/* SIMD paths (quant-avx2.c): fills the fast entries when the CPU allows. */
int q_avx2_available(void);
void q_avx2_install(struct q_traits *table);
void q_avx2_install_vops(struct q_vops *v);

#endif
