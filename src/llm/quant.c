/* quant.c -- reference (scalar) conversions, quantizers and dot products for every tensor type: the scalar tier. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natter/quant.h"
#include "llm/hugemem.h"
#include "llm/quant-impl.h"

/* --- binary16 and bfloat16 --- */

float
q_f16_to_f32(qhalf h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1F;
	uint32_t man = h & 0x3FF;
	uint32_t bits;
	float f;

	if (exp == 0) {
		if (man == 0) {
			bits = sign;
		} else {
			/* Subnormal: normalise. */
			int e = -1;
			do {
				e++;
				man <<= 1;
			} while ((man & 0x400) == 0);
			bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
		}
	} else if (exp == 31) {
		bits = sign | 0x7F800000u | (man << 13);
	} else {
		bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	memcpy(&f, &bits, 4);
	return f;
}

qhalf
q_f32_to_f16(float f)
{
	uint32_t x;
	uint32_t sign, exp, man;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	exp = (x >> 23) & 0xFF;
	man = x & 0x7FFFFF;
	if (exp == 0xFF)
		return (qhalf)(sign | 0x7C00 | (man ? 0x200 : 0));
	int e = (int)exp - 127 + 15;
	if (e >= 31)
		return (qhalf)(sign | 0x7C00);
	if (e <= 0) {
		if (e < -10)
			return (qhalf)sign;
		man |= 0x800000;
		int shift = 14 - e;
		uint32_t half = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1);
		uint32_t mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (qhalf)(sign | half);
	}
	uint32_t half = ((uint32_t)e << 10) | (man >> 13);
	uint32_t rem = man & 0x1FFF;
	if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
		half++;   /* may carry into the exponent, which is right */
	return (qhalf)(sign | half);
}

float
q_bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t
q_f32_to_bf16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	if ((x & 0x7FFFFFFF) > 0x7F800000)
		return (uint16_t)((x >> 16) | 64);   /* quiet NaN */
	return (uint16_t)((x + (0x7FFF + ((x >> 16) & 1))) >> 16);
}

/* --- float types --- */

static void
f32_to_float(const void *x, float *y, int64_t n)
{
	memcpy(y, x, n * sizeof(float));
}

static void
f32_from_float(const float *x, void *y, int64_t n)
{
	memcpy(y, x, n * sizeof(float));
}

static void
f16_to_float(const void *x, float *y, int64_t n)
{
	const qhalf *h = x;
	for (int64_t i = 0; i < n; i++)
		y[i] = q_f16_to_f32(h[i]);
}

static void
f16_from_float(const float *x, void *y, int64_t n)
{
	qhalf *h = y;
	for (int64_t i = 0; i < n; i++)
		h[i] = q_f32_to_f16(x[i]);
}

static void
bf16_to_float(const void *x, float *y, int64_t n)
{
	const uint16_t *h = x;
	for (int64_t i = 0; i < n; i++)
		y[i] = q_bf16_to_f32(h[i]);
}

static void
bf16_from_float(const float *x, void *y, int64_t n)
{
	uint16_t *h = y;
	for (int64_t i = 0; i < n; i++)
		h[i] = q_f32_to_bf16(x[i]);
}

static void
dot_f32_ref(int n, float *s, const void *x, const void *y)
{
	const float *a = x, *b = y;
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += (double)a[i] * b[i];
	*s = (float)sum;
}

static void
dot_f16_ref(int n, float *s, const void *x, const void *y)
{
	const qhalf *a = x;
	const float *b = y;
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += (double)q_f16_to_f32(a[i]) * b[i];
	*s = (float)sum;
}

static void
dot_bf16_ref(int n, float *s, const void *x, const void *y)
{
	const uint16_t *a = x;
	const float *b = y;
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += (double)q_bf16_to_f32(a[i]) * b[i];
	*s = (float)sum;
}

/* --- 32-element block types: decode to integer levels --- */

/* Levels q[32] such that x = d * q (+ m for the _1 types). */
static void
dec_q4_0(const block_q4_0 *b, int8_t *q)
{
	for (int j = 0; j < 16; j++) {
		q[j] = (int8_t)((b->qs[j] & 0xF) - 8);
		q[j + 16] = (int8_t)((b->qs[j] >> 4) - 8);
	}
}

static void
dec_q4_1(const block_q4_1 *b, int8_t *q)
{
	for (int j = 0; j < 16; j++) {
		q[j] = (int8_t)(b->qs[j] & 0xF);
		q[j + 16] = (int8_t)(b->qs[j] >> 4);
	}
}

static void
dec_q5(const uint8_t *qhb, const uint8_t *qs, int8_t *q, int offset)
{
	uint32_t qh;
	memcpy(&qh, qhb, 4);
	for (int j = 0; j < 16; j++) {
		int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
		q[j] = (int8_t)(((qs[j] & 0xF) | (h0 << 4)) - offset);
		q[j + 16] = (int8_t)(((qs[j] >> 4) | (h1 << 4)) - offset);
	}
}

static void
q4_0_to_float(const void *x, float *y, int64_t n)
{
	const block_q4_0 *b = x;
	int8_t q[32];
	for (int64_t i = 0; i < n / 32; i++) {
		float d = q_f16_to_f32(b[i].d);
		dec_q4_0(&b[i], q);
		for (int j = 0; j < 32; j++)
			y[i * 32 + j] = q[j] * d;
	}
}

static void
q4_1_to_float(const void *x, float *y, int64_t n)
{
	const block_q4_1 *b = x;
	int8_t q[32];
	for (int64_t i = 0; i < n / 32; i++) {
		float d = q_f16_to_f32(b[i].d), m = q_f16_to_f32(b[i].m);
		dec_q4_1(&b[i], q);
		for (int j = 0; j < 32; j++)
			y[i * 32 + j] = q[j] * d + m;
	}
}

static void
q5_0_to_float(const void *x, float *y, int64_t n)
{
	const block_q5_0 *b = x;
	int8_t q[32];
	for (int64_t i = 0; i < n / 32; i++) {
		float d = q_f16_to_f32(b[i].d);
		dec_q5(b[i].qh, b[i].qs, q, 16);
		for (int j = 0; j < 32; j++)
			y[i * 32 + j] = q[j] * d;
	}
}

static void
q5_1_to_float(const void *x, float *y, int64_t n)
{
	const block_q5_1 *b = x;
	int8_t q[32];
	for (int64_t i = 0; i < n / 32; i++) {
		float d = q_f16_to_f32(b[i].d), m = q_f16_to_f32(b[i].m);
		dec_q5(b[i].qh, b[i].qs, q, 0);
		for (int j = 0; j < 32; j++)
			y[i * 32 + j] = q[j] * d + m;
	}
}

static void
q8_0_to_float(const void *x, float *y, int64_t n)
{
	const block_q8_0 *b = x;
	for (int64_t i = 0; i < n / 32; i++) {
		float d = q_f16_to_f32(b[i].d);
		for (int j = 0; j < 32; j++)
			y[i * 32 + j] = b[i].qs[j] * d;
	}
}

static void
q8_1_to_float(const void *x, float *y, int64_t n)
{
	const block_q8_1 *b = x;
	for (int64_t i = 0; i < n / 32; i++) {
		float d = q_f16_to_f32(b[i].d);
		for (int j = 0; j < 32; j++)
			y[i * 32 + j] = b[i].qs[j] * d;
	}
}

static int
isum32(const int8_t *a, const int8_t *b)
{
	int s = 0;
	for (int j = 0; j < 32; j++)
		s += a[j] * b[j];
	return s;
}

static void
dot_q4_0_ref(int n, float *s, const void *x, const void *y)
{
	const block_q4_0 *a = x;
	const block_q8_0 *b = y;
	int8_t q[32];
	float sum = 0;
	for (int i = 0; i < n / 32; i++) {
		dec_q4_0(&a[i], q);
		sum += isum32(q, b[i].qs) * q_f16_to_f32(a[i].d) * q_f16_to_f32(b[i].d);
	}
	*s = sum;
}

static void
dot_q4_1_ref(int n, float *s, const void *x, const void *y)
{
	const block_q4_1 *a = x;
	const block_q8_1 *b = y;
	int8_t q[32];
	float sum = 0;
	for (int i = 0; i < n / 32; i++) {
		dec_q4_1(&a[i], q);
		sum += isum32(q, b[i].qs) * q_f16_to_f32(a[i].d) * q_f16_to_f32(b[i].d) +
		    q_f16_to_f32(a[i].m) * q_f16_to_f32(b[i].s);
	}
	*s = sum;
}

static void
dot_q5_0_ref(int n, float *s, const void *x, const void *y)
{
	const block_q5_0 *a = x;
	const block_q8_0 *b = y;
	int8_t q[32];
	float sum = 0;
	for (int i = 0; i < n / 32; i++) {
		dec_q5(a[i].qh, a[i].qs, q, 16);
		sum += isum32(q, b[i].qs) * q_f16_to_f32(a[i].d) * q_f16_to_f32(b[i].d);
	}
	*s = sum;
}

static void
dot_q5_1_ref(int n, float *s, const void *x, const void *y)
{
	const block_q5_1 *a = x;
	const block_q8_1 *b = y;
	int8_t q[32];
	float sum = 0;
	for (int i = 0; i < n / 32; i++) {
		dec_q5(a[i].qh, a[i].qs, q, 0);
		sum += isum32(q, b[i].qs) * q_f16_to_f32(a[i].d) * q_f16_to_f32(b[i].d) +
		    q_f16_to_f32(a[i].m) * q_f16_to_f32(b[i].s);
	}
	*s = sum;
}

static void
dot_q8_0_ref(int n, float *s, const void *x, const void *y)
{
	const block_q8_0 *a = x, *b = y;
	float sum = 0;
	for (int i = 0; i < n / 32; i++)
		sum += isum32(a[i].qs, b[i].qs) * q_f16_to_f32(a[i].d) * q_f16_to_f32(b[i].d);
	*s = sum;
}

/* --- quantizers for the 32-element types (round to nearest) --- */

static void
q8_0_from_float(const float *x, void *y, int64_t n)
{
	block_q8_0 *b = y;
	for (int64_t i = 0; i < n / 32; i++) {
		float amax = 0;
		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[i * 32 + j]));
		float d = amax / 127, id = d ? 1 / d : 0;
		b[i].d = q_f32_to_f16(d);
		for (int j = 0; j < 32; j++)
			b[i].qs[j] = (int8_t)roundf(x[i * 32 + j] * id);
	}
}

static void
q8_1_from_float(const float *x, void *y, int64_t n)
{
	block_q8_1 *b = y;
	for (int64_t i = 0; i < n / 32; i++) {
		float amax = 0;
		int sum = 0;
		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[i * 32 + j]));
		float d = amax / 127, id = d ? 1 / d : 0;
		b[i].d = q_f32_to_f16(d);
		for (int j = 0; j < 32; j++) {
			b[i].qs[j] = (int8_t)roundf(x[i * 32 + j] * id);
			sum += b[i].qs[j];
		}
		b[i].s = q_f32_to_f16(sum * d);
	}
}

/* Signed value of largest magnitude in X[0..n). */
static float
signed_max(const float *x, int n)
{
	float amax = 0, max = 0;
	for (int j = 0; j < n; j++) {
		if (fabsf(x[j]) > amax) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	}
	return max;
}

static void
q4_0_from_float(const float *x, void *y, int64_t n)
{
	block_q4_0 *b = y;
	for (int64_t i = 0; i < n / 32; i++) {
		const float *v = x + i * 32;
		float d = signed_max(v, 32) / -8, id = d ? 1 / d : 0;
		b[i].d = q_f32_to_f16(d);
		for (int j = 0; j < 16; j++) {
			int q0 = (int)fminf(15, fmaxf(0, roundf(v[j] * id) + 8));
			int q1 = (int)fminf(15, fmaxf(0, roundf(v[j + 16] * id) + 8));
			b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
		}
	}
}

static void
q4_1_from_float(const float *x, void *y, int64_t n)
{
	block_q4_1 *b = y;
	for (int64_t i = 0; i < n / 32; i++) {
		const float *v = x + i * 32;
		float mn = v[0], mx = v[0];
		for (int j = 1; j < 32; j++) {
			mn = fminf(mn, v[j]);
			mx = fmaxf(mx, v[j]);
		}
		float d = (mx - mn) / 15, id = d ? 1 / d : 0;
		b[i].d = q_f32_to_f16(d);
		b[i].m = q_f32_to_f16(mn);
		for (int j = 0; j < 16; j++) {
			int q0 = (int)fminf(15, fmaxf(0, roundf((v[j] - mn) * id)));
			int q1 = (int)fminf(15, fmaxf(0, roundf((v[j + 16] - mn) * id)));
			b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
		}
	}
}

static void
q5_pack(const int *q, uint8_t *qh, uint8_t *qs)
{
	uint32_t h = 0;
	for (int j = 0; j < 16; j++) {
		qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
		h |= (uint32_t)((q[j] >> 4) & 1) << j;
		h |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
	}
	memcpy(qh, &h, 4);
}

static void
q5_0_from_float(const float *x, void *y, int64_t n)
{
	block_q5_0 *b = y;
	int q[32];
	for (int64_t i = 0; i < n / 32; i++) {
		const float *v = x + i * 32;
		float d = signed_max(v, 32) / -16, id = d ? 1 / d : 0;
		b[i].d = q_f32_to_f16(d);
		for (int j = 0; j < 32; j++)
			q[j] = (int)fminf(31, fmaxf(0, roundf(v[j] * id) + 16));
		q5_pack(q, b[i].qh, b[i].qs);
	}
}

static void
q5_1_from_float(const float *x, void *y, int64_t n)
{
	block_q5_1 *b = y;
	int q[32];
	for (int64_t i = 0; i < n / 32; i++) {
		const float *v = x + i * 32;
		float mn = v[0], mx = v[0];
		for (int j = 1; j < 32; j++) {
			mn = fminf(mn, v[j]);
			mx = fmaxf(mx, v[j]);
		}
		float d = (mx - mn) / 31, id = d ? 1 / d : 0;
		b[i].d = q_f32_to_f16(d);
		b[i].m = q_f32_to_f16(mn);
		for (int j = 0; j < 32; j++)
			q[j] = (int)fminf(31, fmaxf(0, roundf((v[j] - mn) * id)));
		q5_pack(q, b[i].qh, b[i].qs);
	}
}

/* --- K-quants: decode a block to levels, per-sub-block scales and mins --- */

static void
get_scale_min_k4(int j, const uint8_t *q, int *d, int *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

void
q_kdec_q2_K(const void *blk, struct kdec *k)
{
	const block_q2_K *b = blk;
	k->sub = 16;
	k->d = q_f16_to_f32(b->d);
	k->dmin = q_f16_to_f32(b->dmin);
	for (int j = 0; j < 16; j++) {
		k->sc[j] = b->scales[j] & 0xF;
		k->mn[j] = b->scales[j] >> 4;
	}
	for (int e = 0; e < QK_K; e++) {
		int n = e / 128, r = e % 128, j = r / 32, l = r % 32;
		k->q[e] = (int8_t)((b->qs[n * 32 + l] >> (2 * j)) & 3);
	}
}

void
q_kdec_q3_K(const void *blk, struct kdec *k)
{
	const block_q3_K *b = blk;
	const uint8_t *s = b->scales;
	k->sub = 16;
	k->d = q_f16_to_f32(b->d);
	k->dmin = 0;
	/* 16 6-bit scales: low 4 bits in s[0..7] (two per byte), high 2 bits in s[8..11]. */
	for (int j = 0; j < 16; j++) {
		int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
		int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
		k->sc[j] = (int16_t)((lo | (hi << 4)) - 32);
		k->mn[j] = 0;
	}
	for (int e = 0; e < QK_K; e++) {
		int n = e / 128, r = e % 128, j = r / 32, l = r % 32;
		int q2 = (b->qs[n * 32 + l] >> (2 * j)) & 3;
		int h = (b->hmask[l] >> (n * 4 + j)) & 1;
		k->q[e] = (int8_t)(q2 - (h ? 0 : 4));
	}
}

void
q_kdec_q4_K(const void *blk, struct kdec *k)
{
	const block_q4_K *b = blk;
	k->sub = 32;
	k->d = q_f16_to_f32(b->d);
	k->dmin = q_f16_to_f32(b->dmin);
	for (int j = 0; j < 8; j++) {
		int sc, m;
		get_scale_min_k4(j, b->scales, &sc, &m);
		k->sc[j] = (int16_t)sc;
		k->mn[j] = (int16_t)m;
	}
	for (int e = 0; e < QK_K; e++) {
		int c = e / 64, r = e % 64, l = r % 32;
		uint8_t byte = b->qs[c * 32 + l];
		k->q[e] = (int8_t)(r < 32 ? (byte & 0xF) : (byte >> 4));
	}
}

void
q_kdec_q5_K(const void *blk, struct kdec *k)
{
	const block_q5_K *b = blk;
	k->sub = 32;
	k->d = q_f16_to_f32(b->d);
	k->dmin = q_f16_to_f32(b->dmin);
	for (int j = 0; j < 8; j++) {
		int sc, m;
		get_scale_min_k4(j, b->scales, &sc, &m);
		k->sc[j] = (int16_t)sc;
		k->mn[j] = (int16_t)m;
	}
	for (int e = 0; e < QK_K; e++) {
		int c = e / 64, r = e % 64, l = r % 32, hi = r >= 32;
		uint8_t byte = b->qs[c * 32 + l];
		int lo = hi ? (byte >> 4) : (byte & 0xF);
		int h = (b->qh[l] >> (2 * c + hi)) & 1;
		k->q[e] = (int8_t)(lo | (h << 4));
	}
}

void
q_kdec_q6_K(const void *blk, struct kdec *k)
{
	const block_q6_K *b = blk;
	k->sub = 16;
	k->d = q_f16_to_f32(b->d);
	k->dmin = 0;
	for (int j = 0; j < 16; j++) {
		k->sc[j] = b->scales[j];
		k->mn[j] = 0;
	}
	for (int e = 0; e < QK_K; e++) {
		int n = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
		const uint8_t *ql = b->ql + n * 64, *qh = b->qh + n * 32;
		int lo = quarter == 0 ? (ql[l] & 0xF) : quarter == 1 ? (ql[l + 32] & 0xF) :
		    quarter == 2 ? (ql[l] >> 4) : (ql[l + 32] >> 4);
		int h = (qh[l] >> (2 * quarter)) & 3;
		k->q[e] = (int8_t)((lo | (h << 4)) - 32);
	}
}

typedef void (*kdec_fn)(const void *, struct kdec *);

static void
k_to_float(const void *x, float *y, int64_t n, size_t bsize, kdec_fn dec)
{
	struct kdec k;
	for (int64_t i = 0; i < n / QK_K; i++) {
		dec((const uint8_t *)x + i * bsize, &k);
		for (int e = 0; e < QK_K; e++) {
			int j = e / k.sub;
			y[i * QK_K + e] = k.d * k.sc[j] * k.q[e] - k.dmin * k.mn[j];
		}
	}
}

static void
k_dot(int n, float *s, const void *x, const void *y, size_t bsize, kdec_fn dec)
{
	const block_q8_K *b = y;
	struct kdec k;
	float sum = 0;

	for (int i = 0; i < n / QK_K; i++) {
		int isum = 0, msum = 0;
		dec((const uint8_t *)x + i * bsize, &k);
		for (int j = 0; j < QK_K / k.sub; j++) {
			int si = 0, s8 = 0;
			for (int e = j * k.sub; e < (j + 1) * k.sub; e++) {
				si += k.q[e] * b[i].qs[e];
				s8 += b[i].qs[e];
			}
			isum += k.sc[j] * si;
			msum += k.mn[j] * s8;
		}
		sum += b[i].d * (k.d * isum - k.dmin * msum);
	}
	*s = sum;
}

#define K_FUNCS(name) \
	static void name##_to_float(const void *x, float *y, int64_t n) \
	{ k_to_float(x, y, n, sizeof(block_##name), q_kdec_##name); } \
	static void dot_##name##_ref(int n, float *s, const void *x, const void *y) \
	{ k_dot(n, s, x, y, sizeof(block_##name), q_kdec_##name); }
K_FUNCS(q2_K)
K_FUNCS(q3_K)
K_FUNCS(q4_K)
K_FUNCS(q5_K)
K_FUNCS(q6_K)

static void
q8_K_to_float(const void *x, float *y, int64_t n)
{
	const block_q8_K *b = x;
	for (int64_t i = 0; i < n / QK_K; i++)
		for (int j = 0; j < QK_K; j++)
			y[i * QK_K + j] = b[i].d * b[i].qs[j];
}

void
q_q8_K_from_float_ref(const float *x, void *y, int64_t n)
{
	block_q8_K *b = y;
	for (int64_t i = 0; i < n / QK_K; i++) {
		const float *v = x + i * QK_K;
		float max = signed_max(v, QK_K);
		if (max == 0) {
			memset(&b[i], 0, sizeof(b[i]));
			continue;
		}
		float iscale = -127.f / max;
		for (int j = 0; j < QK_K; j++) {
			int q = (int)lrintf(iscale * v[j]);
			b[i].qs[j] = (int8_t)(q > 127 ? 127 : q < -128 ? -128 : q);
		}
		for (int j = 0; j < QK_K / 16; j++) {
			int s = 0;
			for (int l = 0; l < 16; l++)
				s += b[i].qs[j * 16 + l];
			b[i].bsums[j] = (int16_t)s;
		}
		b[i].d = 1 / iscale;
	}
}

/* --- K-quant quantizers (simple round-to-nearest; good enough for mkmodel) --- */

static void
pack_scale_min_k4(uint8_t *s, const int *ls, const int *lm)
{
	memset(s, 0, K_SCALE_SIZE);
	for (int j = 0; j < 8; j++) {
		if (j < 4) {
			s[j] = (uint8_t)ls[j];
			s[j + 4] = (uint8_t)lm[j];
		} else {
			s[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
			s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
			s[j] |= (uint8_t)((lm[j] >> 4) << 6);
		}
	}
}

/* Shared by Q4_K (NMAX 15) and Q5_K (NMAX 31): levels L[256], packed scales. */
static void
k45_levels(const float *v, int nmax, qhalf *dd, qhalf *dm, uint8_t *scales, int *L)
{
	float scale[8], mins[8], maxs = 0, maxm = 0;
	int ls[8], lm[8];

	for (int j = 0; j < 8; j++) {
		float mn = 0, mx = 0;
		for (int l = 0; l < 32; l++) {
			mn = fminf(mn, v[j * 32 + l]);
			mx = fmaxf(mx, v[j * 32 + l]);
		}
		scale[j] = (mx - mn) / nmax;
		mins[j] = -mn;
		maxs = fmaxf(maxs, scale[j]);
		maxm = fmaxf(maxm, mins[j]);
	}
	float d = maxs / 63, dmin = maxm / 63;
	*dd = q_f32_to_f16(d);
	*dm = q_f32_to_f16(dmin);
	d = q_f16_to_f32(*dd);
	dmin = q_f16_to_f32(*dm);
	for (int j = 0; j < 8; j++) {
		ls[j] = d ? (int)fminf(63, roundf(scale[j] / d)) : 0;
		lm[j] = dmin ? (int)fminf(63, roundf(mins[j] / dmin)) : 0;
		float sd = d * ls[j], sm = dmin * lm[j];
		for (int l = 0; l < 32; l++) {
			int q = sd ? (int)roundf((v[j * 32 + l] + sm) / sd) : 0;
			L[j * 32 + l] = q < 0 ? 0 : q > nmax ? nmax : q;
		}
	}
	pack_scale_min_k4(scales, ls, lm);
}

static void
q4_K_from_float(const float *x, void *y, int64_t n)
{
	block_q4_K *b = y;
	int L[QK_K];
	for (int64_t i = 0; i < n / QK_K; i++) {
		k45_levels(x + i * QK_K, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
		for (int c = 0; c < 4; c++)
			for (int l = 0; l < 32; l++)
				b[i].qs[c * 32 + l] = (uint8_t)(L[c * 64 + l] | (L[c * 64 + 32 + l] << 4));
	}
}

static void
q5_K_from_float(const float *x, void *y, int64_t n)
{
	block_q5_K *b = y;
	int L[QK_K];
	for (int64_t i = 0; i < n / QK_K; i++) {
		k45_levels(x + i * QK_K, 31, &b[i].d, &b[i].dmin, b[i].scales, L);
		memset(b[i].qh, 0, sizeof(b[i].qh));
		for (int c = 0; c < 4; c++) {
			for (int l = 0; l < 32; l++) {
				int q1 = L[c * 64 + l], q2 = L[c * 64 + 32 + l];
				b[i].qs[c * 32 + l] = (uint8_t)((q1 & 0xF) | ((q2 & 0xF) << 4));
				b[i].qh[l] |= (uint8_t)(((q1 >> 4) << (2 * c)) | ((q2 >> 4) << (2 * c + 1)));
			}
		}
	}
}

static void
q6_K_from_float(const float *x, void *y, int64_t n)
{
	block_q6_K *b = y;
	int L[QK_K];
	for (int64_t i = 0; i < n / QK_K; i++) {
		const float *v = x + i * QK_K;
		float scale[16], amax = 0, maxsc = 0;
		for (int j = 0; j < 16; j++) {
			scale[j] = signed_max(v + j * 16, 16) / -32;
			if (fabsf(scale[j]) > amax) {
				amax = fabsf(scale[j]);
				maxsc = scale[j];
			}
		}
		float d = maxsc / -128;
		b[i].d = q_f32_to_f16(d);
		d = q_f16_to_f32(b[i].d);
		for (int j = 0; j < 16; j++) {
			int ls = d ? (int)roundf(scale[j] / d) : 0;
			ls = ls < -128 ? -128 : ls > 127 ? 127 : ls;
			b[i].scales[j] = (int8_t)ls;
			float sd = d * ls;
			for (int l = 0; l < 16; l++) {
				int q = sd ? (int)roundf(v[j * 16 + l] / sd) : 0;
				q = q < -32 ? -32 : q > 31 ? 31 : q;
				L[j * 16 + l] = q + 32;
			}
		}
		for (int nn = 0; nn < 2; nn++) {
			uint8_t *ql = b[i].ql + nn * 64, *qh = b[i].qh + nn * 32;
			const int *Ln = L + nn * 128;
			for (int l = 0; l < 32; l++) {
				int q1 = Ln[l], q2 = Ln[l + 32], q3 = Ln[l + 64], q4 = Ln[l + 96];
				ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
				ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
				qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
			}
		}
	}
}

/* --- IQ4_NL and IQ4_XS: 4-bit indices into a non-linear grid --- */

const int8_t q_iq4nl_values[16] = {
	-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* Index of the grid level nearest to Y (ties to the lower level). */
static int
iq4_nearest(float y)
{
	int lo = 0, hi = 15;
	if (y <= q_iq4nl_values[0])
		return 0;
	if (y >= q_iq4nl_values[15])
		return 15;
	while (hi - lo > 1) {   /* the grid is sorted */
		int mid = (lo + hi) / 2;
		if (y < q_iq4nl_values[mid])
			hi = mid;
		else
			lo = mid;
	}
	return y - q_iq4nl_values[lo] <= q_iq4nl_values[hi] - y ? lo : hi;
}

/*
 * The scale of N values X on the grid, and their indices L: candidate
 * scales around "largest magnitude on the grid's end" are tried; for each,
 * every value takes its nearest level and the scale is refitted by least
 * squares; the candidate with the smallest squared error wins.  Returns
 * the scale (0 for an all-zero block).
 */
static float
iq4_fit(const float *x, int n, uint8_t *L)
{
	float amax = 0, max = 0, best_err = INFINITY, best_d = 0;
	uint8_t Lt[32];

	for (int j = 0; j < n; j++) {
		if (fabsf(x[j]) > amax) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	}
	if (amax == 0) {
		memset(L, 8, n);   /* level 1: the smallest magnitude; times d = 0 */
		return 0;
	}
	for (int k = 0; k < 38; k++) {
		/* The largest value lands near -127 (the grid's long end) or
		 * near 113 (its other end). */
		float end = k < 19 ? -127.0f + 1.5f * (k - 9) : 113.0f + 1.5f * (k - 28);
		float d = max / end, id = 1 / d, sxv = 0, svv = 0, err = 0;
		for (int j = 0; j < n; j++) {
			Lt[j] = (uint8_t)iq4_nearest(x[j] * id);
			float v = q_iq4nl_values[Lt[j]];
			sxv += x[j] * v;
			svv += v * v;
		}
		if (svv > 0)
			d = sxv / svv;
		for (int j = 0; j < n; j++) {
			float e = x[j] - d * q_iq4nl_values[Lt[j]];
			err += e * e;
		}
		if (err < best_err) {
			best_err = err;
			best_d = d;
			memcpy(L, Lt, n);
		}
	}
	return best_d;
}

static void
iq4_nl_to_float(const void *x, float *y, int64_t n)
{
	const block_iq4_nl *b = x;
	for (int64_t i = 0; i < n / 32; i++) {
		float d = q_f16_to_f32(b[i].d);
		for (int j = 0; j < 16; j++) {
			y[i * 32 + j] = d * q_iq4nl_values[b[i].qs[j] & 0xF];
			y[i * 32 + j + 16] = d * q_iq4nl_values[b[i].qs[j] >> 4];
		}
	}
}

static void
iq4_nl_from_float(const float *x, void *y, int64_t n)
{
	block_iq4_nl *b = y;
	uint8_t L[32];
	for (int64_t i = 0; i < n / 32; i++) {
		float d = iq4_fit(x + i * 32, 32, L);
		b[i].d = q_f32_to_f16(d);
		/* Re-pick the levels for the scale as stored (binary16). */
		d = q_f16_to_f32(b[i].d);
		if (d != 0)
			for (int j = 0; j < 32; j++)
				L[j] = (uint8_t)iq4_nearest(x[i * 32 + j] / d);
		for (int j = 0; j < 16; j++)
			b[i].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
	}
}

static void
dot_iq4_nl_ref(int n, float *s, const void *x, const void *y)
{
	const block_iq4_nl *a = x;
	const block_q8_0 *b = y;
	float sum = 0;
	for (int i = 0; i < n / 32; i++) {
		int isum = 0;
		for (int j = 0; j < 16; j++)
			isum += q_iq4nl_values[a[i].qs[j] & 0xF] * b[i].qs[j] +
			    q_iq4nl_values[a[i].qs[j] >> 4] * b[i].qs[j + 16];
		sum += isum * q_f16_to_f32(a[i].d) * q_f16_to_f32(b[i].d);
	}
	*s = sum;
}

/* The 6-bit scale of sub-block IB of an IQ4_XS block, minus 32. */
static int
iq4_xs_scale(const block_iq4_xs *b, int ib)
{
	int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4);
	return ls - 32;
}

static void
iq4_xs_to_float(const void *x, float *y, int64_t n)
{
	const block_iq4_xs *b = x;
	for (int64_t i = 0; i < n / QK_K; i++) {
		float d = q_f16_to_f32(b[i].d);
		for (int ib = 0; ib < 8; ib++) {
			float dl = d * iq4_xs_scale(&b[i], ib);
			const uint8_t *qs = b[i].qs + 16 * ib;
			float *o = y + i * QK_K + 32 * ib;
			for (int j = 0; j < 16; j++) {
				o[j] = dl * q_iq4nl_values[qs[j] & 0xF];
				o[j + 16] = dl * q_iq4nl_values[qs[j] >> 4];
			}
		}
	}
}

static void
iq4_xs_from_float(const float *x, void *y, int64_t n)
{
	block_iq4_xs *b = y;
	for (int64_t i = 0; i < n / QK_K; i++) {
		const float *v = x + i * QK_K;
		uint8_t L[32];
		float sc[8], amax = 0, max = 0;
		int ls[8];
		for (int ib = 0; ib < 8; ib++) {
			sc[ib] = iq4_fit(v + 32 * ib, 32, L);
			if (fabsf(sc[ib]) > amax) {
				amax = fabsf(sc[ib]);
				max = sc[ib];
			}
		}
		/* Sub-block scales are d * (ls - 32), ls - 32 in [-32, 31]: the
		 * largest one maps to -32. */
		float d = max / -32;
		b[i].d = q_f32_to_f16(d);
		d = q_f16_to_f32(b[i].d);
		b[i].scales_h = 0;
		memset(b[i].scales_l, 0, sizeof(b[i].scales_l));
		for (int ib = 0; ib < 8; ib++) {
			int l = d != 0 ? (int)lrintf(sc[ib] / d) : 0;
			l = l < -32 ? -32 : l > 31 ? 31 : l;
			ls[ib] = l + 32;
			b[i].scales_l[ib / 2] |= (uint8_t)((ls[ib] & 0xF) << (4 * (ib % 2)));
			b[i].scales_h |= (uint16_t)((ls[ib] >> 4) << (2 * ib));
			float dl = d * l;
			const float *w = v + 32 * ib;
			for (int j = 0; j < 32; j++)
				L[j] = dl != 0 ? (uint8_t)iq4_nearest(w[j] / dl) : 8;
			for (int j = 0; j < 16; j++)
				b[i].qs[16 * ib + j] = (uint8_t)(L[j] | (L[j + 16] << 4));
		}
	}
}

static void
dot_iq4_xs_ref(int n, float *s, const void *x, const void *y)
{
	const block_iq4_xs *a = x;
	const block_q8_K *b = y;
	float sum = 0;
	for (int i = 0; i < n / QK_K; i++) {
		int isum = 0;
		for (int ib = 0; ib < 8; ib++) {
			const uint8_t *qs = a[i].qs + 16 * ib;
			const int8_t *q8 = b[i].qs + 32 * ib;
			int si = 0;
			for (int j = 0; j < 16; j++)
				si += q_iq4nl_values[qs[j] & 0xF] * q8[j] + q_iq4nl_values[qs[j] >> 4] * q8[j + 16];
			isum += iq4_xs_scale(&a[i], ib) * si;
		}
		sum += q_f16_to_f32(a[i].d) * b[i].d * isum;
	}
	*s = sum;
}

/* --- q8p: the int8 GEMM's activation rows (quant-impl.h) --- */

void
q_q8p_from_float_ref(const float *x, void *row, int n)
{
	int8_t *qs = row;
	float *d = Q8P_D(row, n), *s32 = Q8P_S32(row, n), *s16 = Q8P_S16(row, n);
	int32_t *n32 = Q8P_N32(row, n), *n16 = Q8P_N16(row, n);

	for (int b = 0; b < n / 32; b++) {
		const float *v = x + 32 * b;
		float amax = 0;
		int sum[2] = { 0, 0 };
		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(v[j]));
		float db = amax / 127, id = db ? 1 / db : 0;
		for (int j = 0; j < 32; j++) {
			int q = (int)lrintf(v[j] * id);
			q = q > 127 ? 127 : q < -127 ? -127 : q;
			qs[32 * b + j] = (int8_t)q;
			sum[j / 16] += q;
		}
		d[b] = db;
		s32[b] = db * (sum[0] + sum[1]);
		s16[2 * b] = db * sum[0];
		s16[2 * b + 1] = db * sum[1];
		n32[b] = -(sum[0] + sum[1]);
		n16[2 * b] = -sum[0];
		n16[2 * b + 1] = -sum[1];
	}
}

/* A q8p row from activations already in VT (Q8_0, Q8_1 or Q8_K): the same
 * levels and scales, so that the int8 GEMM rounds its activations exactly
 * as the dot products of the type (and llama.cpp's) do. */
void
q_q8p_from_vdt(const void *vrow, enum ggml_type vt, void *row, int n)
{
	int8_t *qs = row;
	float *d = Q8P_D(row, n), *s32 = Q8P_S32(row, n), *s16 = Q8P_S16(row, n);
	int32_t *n32 = Q8P_N32(row, n), *n16 = Q8P_N16(row, n);

	for (int b = 0; b < n / 32; b++) {
		const int8_t *src;
		float db;
		int sum[2] = { 0, 0 };
		if (vt == GGML_TYPE_Q8_K) {
			/* Its sums of 16 come with it. */
			const block_q8_K *k = (const block_q8_K *)vrow + b / 8;
			src = k->qs + 32 * (b % 8);
			db = k->d;
			sum[0] = k->bsums[2 * (b % 8)];
			sum[1] = k->bsums[2 * (b % 8) + 1];
		} else {
			if (vt == GGML_TYPE_Q8_1) {
				const block_q8_1 *k = (const block_q8_1 *)vrow + b;
				src = k->qs;
				db = q_f16_to_f32(k->d);
			} else {
				const block_q8_0 *k = (const block_q8_0 *)vrow + b;
				src = k->qs;
				db = q_f16_to_f32(k->d);
			}
			/* Two loops of 16 the compiler vectorises. */
			int s0 = 0, s1 = 0;
			for (int j = 0; j < 16; j++)
				s0 += src[j];
			for (int j = 16; j < 32; j++)
				s1 += src[j];
			sum[0] = s0;
			sum[1] = s1;
		}
		memcpy(qs + 32 * b, src, 32);
		d[b] = db;
		s32[b] = db * (sum[0] + sum[1]);
		s16[2 * b] = db * sum[0];
		s16[2 * b + 1] = db * sum[1];
		n32[b] = -(sum[0] + sum[1]);
		n16[2 * b] = -sum[0];
		n16[2 * b + 1] = -sum[1];
	}
}

void
q_q8p_to_float(const void *row, float *x, int n)
{
	const int8_t *qs = row;
	const float *d = Q8P_D(row, n);
	for (int i = 0; i < n; i++)
		x[i] = d[i / 32] * qs[i];
}

size_t
q_act_row_bytes(enum q_act a, enum ggml_type t, int n)
{
	switch (a) {
	case Q_ACT_F32: return (size_t)n * sizeof(float);
	case Q_ACT_VDT: {
		enum ggml_type vt = q_traits_table[t].vec_dot_type;
		return vt == GGML_TYPE_F32 ? (size_t)n * sizeof(float) : q_row_size(vt, n);
	}
	case Q_ACT_Q8P: return Q8P_ROW_BYTES(n);
	case Q_ACT_BF16: return line_bytes((size_t)n * 2);
	}
	return 0;
}

/* --- the table --- */

struct q_traits q_traits_table[GGML_TYPE_COUNT] = {
	[GGML_TYPE_F32] = { 1, GGML_TYPE_F32, f32_to_float, f32_from_float, dot_f32_ref, NULL, NULL, NULL },
	[GGML_TYPE_F16] = { 1, GGML_TYPE_F32, f16_to_float, f16_from_float, dot_f16_ref, NULL, NULL, NULL },
	[GGML_TYPE_BF16] = { 1, GGML_TYPE_F32, bf16_to_float, bf16_from_float, dot_bf16_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q4_0] = { 1, GGML_TYPE_Q8_0, q4_0_to_float, q4_0_from_float, dot_q4_0_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q4_1] = { 1, GGML_TYPE_Q8_1, q4_1_to_float, q4_1_from_float, dot_q4_1_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q5_0] = { 1, GGML_TYPE_Q8_0, q5_0_to_float, q5_0_from_float, dot_q5_0_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q5_1] = { 1, GGML_TYPE_Q8_1, q5_1_to_float, q5_1_from_float, dot_q5_1_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q8_0] = { 1, GGML_TYPE_Q8_0, q8_0_to_float, q8_0_from_float, dot_q8_0_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q8_1] = { 0, GGML_TYPE_Q8_1, q8_1_to_float, q8_1_from_float, NULL, NULL, NULL, NULL },
	[GGML_TYPE_Q2_K] = { 1, GGML_TYPE_Q8_K, q2_K_to_float, NULL, dot_q2_K_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q3_K] = { 1, GGML_TYPE_Q8_K, q3_K_to_float, NULL, dot_q3_K_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q4_K] = { 1, GGML_TYPE_Q8_K, q4_K_to_float, q4_K_from_float, dot_q4_K_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q5_K] = { 1, GGML_TYPE_Q8_K, q5_K_to_float, q5_K_from_float, dot_q5_K_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q6_K] = { 1, GGML_TYPE_Q8_K, q6_K_to_float, q6_K_from_float, dot_q6_K_ref, NULL, NULL, NULL },
	[GGML_TYPE_IQ4_NL] = { 1, GGML_TYPE_Q8_0, iq4_nl_to_float, iq4_nl_from_float, dot_iq4_nl_ref, NULL, NULL, NULL },
	[GGML_TYPE_IQ4_XS] = { 1, GGML_TYPE_Q8_K, iq4_xs_to_float, iq4_xs_from_float, dot_iq4_xs_ref, NULL, NULL, NULL },
	[GGML_TYPE_Q8_K] = { 0, GGML_TYPE_Q8_K, q8_K_to_float, q_q8_K_from_float_ref, NULL, NULL, NULL, NULL },
};

size_t
q_row_size(enum ggml_type t, int64_t n)
{
	const struct ggml_type_info *ti = ggml_type_info_get(t);
	return ti->blck_size ? (size_t)(n / ti->blck_size) * ti->type_size : 0;
}

const struct q_traits *
q_traits_get(enum ggml_type t)
{
	static const struct q_traits none = { 0, GGML_TYPE_F32, NULL, NULL, NULL, NULL, NULL, NULL };
	if ((unsigned)t >= GGML_TYPE_COUNT)
		return &none;
	q_init(0);   /* the fast entries are filled once, by the tier choice */
	return &q_traits_table[t];
}

/* --- the scalar tier --- */

static void
ref_silu_mul(int n, float *g, const float *u)
{
	for (int i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void
ref_rmsnorm(int n, float *o, const float *x, const float *w, float eps)
{
	double ss = 0;
	for (int i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	float scale = (float)(1.0 / sqrt(ss / n + eps));
	for (int i = 0; i < n; i++)
		o[i] = x[i] * scale * w[i];
}

static const struct q_vops vops_ref = { ref_silu_mul, ref_rmsnorm };

const struct q_vops *
q_vops_get(void)
{
	return &q_kern()->vops;
}

const struct q_vops *
q_vops_ref(void)
{
	return &vops_ref;
}

/* A dot product per row and token: the scalar GEMV, one per type. */
#define REF_GEMV(T) \
	static void gemv_##T##_ref(int n, float *out, size_t ldo, const uint8_t *w, size_t ws, int nr, \
				   const uint8_t *x, size_t xs, int nt) \
	{ \
		for (int r = 0; r < nr; r++) \
			for (int t = 0; t < nt; t++) \
				dot_##T##_ref(n, &out[(size_t)t * ldo + r], w + (size_t)r * ws, x + (size_t)t * xs); \
	}
REF_GEMV(f32) REF_GEMV(f16) REF_GEMV(bf16) REF_GEMV(q4_0) REF_GEMV(q4_1) REF_GEMV(q5_0) REF_GEMV(q5_1)
REF_GEMV(q8_0) REF_GEMV(q2_K) REF_GEMV(q3_K) REF_GEMV(q4_K) REF_GEMV(q5_K) REF_GEMV(q6_K)
REF_GEMV(iq4_nl) REF_GEMV(iq4_xs)

static double
bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Eight independent multiply-add chains: the scalar tier's float peak. */
static double
peak_fma_ref(double seconds)
{
	volatile float seed = 1.0f;
	float a[8], m = 0.999999f, c = 1e-7f;
	double t0 = bench_now(), t;
	long iters = 0;
	for (int i = 0; i < 8; i++)
		a[i] = seed + i;
	do {
		for (int r = 0; r < 4096; r++)
			for (int i = 0; i < 8; i++)
				a[i] = a[i] * m + c;
		iters += 4096;
		t = bench_now() - t0;
	} while (t < seconds);
	seed = a[0] + a[7];
	return iters * 8 * 2 / t / 1e9;
}

static double
peak_i8_ref(double seconds)
{
	volatile int seed = 3;
	int32_t acc[8];
	int8_t x[32], y[32];
	double t0 = bench_now(), t;
	long iters = 0;
	for (int i = 0; i < 32; i++) {
		x[i] = (int8_t)(seed + i);
		y[i] = (int8_t)(seed - i);
	}
	for (int i = 0; i < 8; i++)
		acc[i] = 0;
	do {
		for (int r = 0; r < 1024; r++) {
			for (int i = 0; i < 8; i++)
				for (int j = 0; j < 4; j++)
					acc[i] += x[4 * i + j] * y[4 * i + j];
			x[r & 31]++;
		}
		iters += 1024;
		t = bench_now() - t0;
	} while (t < seconds);
	seed = acc[0] + acc[7];
	return iters * 32 * 2 / t / 1e9;
}

static uint64_t
read_sum_ref(const void *buf, size_t bytes, size_t ahead)
{
	const uint64_t *p = buf;
	uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
	for (size_t i = 0; i + 8 <= bytes / 8; i += 8) {
		if (ahead)
			__builtin_prefetch((const uint8_t *)(p + i) + ahead);
		s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3];
		s4 += p[i + 4]; s5 += p[i + 5]; s6 += p[i + 6]; s7 += p[i + 7];
	}
	return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

static struct q_kernels kern_scalar;
static pthread_once_t kern_scalar_once = PTHREAD_ONCE_INIT;

static void
kern_scalar_build(void)
{
	struct q_kernels *k = &kern_scalar;
#define REF(TY, T) \
	k->t[TY].vec_dot = dot_##T##_ref; k->t[TY].to_float = q_traits_table[TY].to_float; k->t[TY].gemv = gemv_##T##_ref;
	REF(GGML_TYPE_F32, f32) REF(GGML_TYPE_F16, f16) REF(GGML_TYPE_BF16, bf16)
	REF(GGML_TYPE_Q4_0, q4_0) REF(GGML_TYPE_Q4_1, q4_1) REF(GGML_TYPE_Q5_0, q5_0) REF(GGML_TYPE_Q5_1, q5_1)
	REF(GGML_TYPE_Q8_0, q8_0) REF(GGML_TYPE_Q2_K, q2_K) REF(GGML_TYPE_Q3_K, q3_K) REF(GGML_TYPE_Q4_K, q4_K)
	REF(GGML_TYPE_Q5_K, q5_K) REF(GGML_TYPE_Q6_K, q6_K) REF(GGML_TYPE_IQ4_NL, iq4_nl) REF(GGML_TYPE_IQ4_XS, iq4_xs)
#undef REF
	k->t[GGML_TYPE_Q8_1].to_float = q8_1_to_float;
	k->t[GGML_TYPE_Q8_K].to_float = q8_K_to_float;
	k->name = "scalar";
	k->act_q8_0 = q8_0_from_float;
	k->act_q8_1 = q8_1_from_float;
	k->act_q8_K = q_q8_K_from_float_ref;
	k->act_q8p = q_q8p_from_float_ref;
	k->vops = vops_ref;
	k->gemm_rows = 1;
	k->peak_fma = peak_fma_ref;
	k->peak_i8 = peak_i8_ref;
	k->read_sum = read_sum_ref;
}

const struct q_kernels *
q_kern_scalar(void)
{
	pthread_once(&kern_scalar_once, kern_scalar_build);
	return &kern_scalar;
}

void
q_kern_complete(struct q_kernels *k)
{
	const struct q_kernels *s = q_kern_scalar();

	for (int t = 0; t < GGML_TYPE_COUNT; t++) {
		if (!k->t[t].vec_dot)
			k->t[t].vec_dot = s->t[t].vec_dot;
		if (!k->t[t].to_float)
			k->t[t].to_float = s->t[t].to_float;
		if (!k->t[t].gemv)
			k->t[t].gemv = s->t[t].gemv;
	}
	if (!k->act_q8_0) k->act_q8_0 = s->act_q8_0;
	if (!k->act_q8_1) k->act_q8_1 = s->act_q8_1;
	if (!k->act_q8_K) k->act_q8_K = s->act_q8_K;
	if (!k->act_q8p) k->act_q8p = s->act_q8p;
	if (!k->vops.silu_mul) k->vops.silu_mul = s->vops.silu_mul;
	if (!k->vops.rmsnorm) k->vops.rmsnorm = s->vops.rmsnorm;
	if (!k->peak_fma) k->peak_fma = s->peak_fma;
	if (!k->peak_i8) k->peak_i8 = s->peak_i8;
	if (!k->read_sum) k->read_sum = s->read_sum;
	if (k->gemm_rows < 1)
		k->gemm_rows = 1;
}

q_from_float_fn
q_kern_act_vdt(const struct q_kernels *k, enum ggml_type vt)
{
	switch (vt) {
	case GGML_TYPE_Q8_0: return k->act_q8_0;
	case GGML_TYPE_Q8_1: return k->act_q8_1;
	case GGML_TYPE_Q8_K: return k->act_q8_K;
	default: return NULL;
	}
}
