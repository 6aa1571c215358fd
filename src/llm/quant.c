/* quant.c -- reference (scalar) conversions and dot products for every tensor type. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "natter/quant.h"
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

/* --- the table --- */

struct q_traits q_traits_table[GGML_TYPE_COUNT] = {
	[GGML_TYPE_F32] = { 1, GGML_TYPE_F32, f32_to_float, f32_from_float, dot_f32_ref, NULL, NULL },
	[GGML_TYPE_F16] = { 1, GGML_TYPE_F32, f16_to_float, f16_from_float, dot_f16_ref, NULL, NULL },
	[GGML_TYPE_BF16] = { 1, GGML_TYPE_F32, bf16_to_float, bf16_from_float, dot_bf16_ref, NULL, NULL },
	[GGML_TYPE_Q4_0] = { 1, GGML_TYPE_Q8_0, q4_0_to_float, q4_0_from_float, dot_q4_0_ref, NULL, NULL },
	[GGML_TYPE_Q4_1] = { 1, GGML_TYPE_Q8_1, q4_1_to_float, q4_1_from_float, dot_q4_1_ref, NULL, NULL },
	[GGML_TYPE_Q5_0] = { 1, GGML_TYPE_Q8_0, q5_0_to_float, q5_0_from_float, dot_q5_0_ref, NULL, NULL },
	[GGML_TYPE_Q5_1] = { 1, GGML_TYPE_Q8_1, q5_1_to_float, q5_1_from_float, dot_q5_1_ref, NULL, NULL },
	[GGML_TYPE_Q8_0] = { 1, GGML_TYPE_Q8_0, q8_0_to_float, q8_0_from_float, dot_q8_0_ref, NULL, NULL },
	[GGML_TYPE_Q8_1] = { 0, GGML_TYPE_Q8_1, q8_1_to_float, q8_1_from_float, NULL, NULL, NULL },
	[GGML_TYPE_Q2_K] = { 1, GGML_TYPE_Q8_K, q2_K_to_float, NULL, dot_q2_K_ref, NULL, NULL },
	[GGML_TYPE_Q3_K] = { 1, GGML_TYPE_Q8_K, q3_K_to_float, NULL, dot_q3_K_ref, NULL, NULL },
	[GGML_TYPE_Q4_K] = { 1, GGML_TYPE_Q8_K, q4_K_to_float, q4_K_from_float, dot_q4_K_ref, NULL, NULL },
	[GGML_TYPE_Q5_K] = { 1, GGML_TYPE_Q8_K, q5_K_to_float, q5_K_from_float, dot_q5_K_ref, NULL, NULL },
	[GGML_TYPE_Q6_K] = { 1, GGML_TYPE_Q8_K, q6_K_to_float, q6_K_from_float, dot_q6_K_ref, NULL, NULL },
	[GGML_TYPE_Q8_K] = { 0, GGML_TYPE_Q8_K, q8_K_to_float, q_q8_K_from_float_ref, NULL, NULL, NULL },
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
	return &q_traits_table[t];
}

static int q_simd;

static float
ref_exp_sum(float *x, int n, float max)
{
	double sum = 0;
	for (int i = 0; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += x[i];
	}
	return (float)sum;
}

static void
ref_axpy(int n, float a, const float *x, float *y)
{
	for (int i = 0; i < n; i++)
		y[i] += a * x[i];
}

static float
ref_dot(int n, const float *x, const float *y)
{
	float s = 0;
	for (int i = 0; i < n; i++)
		s += x[i] * y[i];
	return s;
}

static const struct q_vops vops_ref = { ref_exp_sum, ref_axpy, ref_dot };
static struct q_vops vops_fast = { ref_exp_sum, ref_axpy, ref_dot };

const struct q_vops *
q_vops_get(void)
{
	return &vops_fast;
}

const struct q_vops *
q_vops_ref(void)
{
	return &vops_ref;
}

void
q_init(int force_scalar)
{
	for (int t = 0; t < GGML_TYPE_COUNT; t++) {
		q_traits_table[t].vec_dot = q_traits_table[t].vec_dot_ref;
		q_traits_table[t].to_float_fast = q_traits_table[t].to_float;
		q_traits_table[t].from_float_fast = q_traits_table[t].from_float;
	}
	q_simd = 0;
	vops_fast = vops_ref;
	if (!force_scalar && q_avx2_available()) {
		q_avx2_install(q_traits_table);
		q_avx2_install_vops(&vops_fast);
		q_simd = 1;
	}
}

const char *
q_cpu_features(void)
{
	return q_simd ? "AVX2 FMA F16C" : "scalar";
}
