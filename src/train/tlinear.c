/* tlinear.c -- y = W x + s B (A x): W frozen in its own (quantized) type, dequantized a tile at a time. */
#include "config.h"

#include <string.h>

#include <cblas.h>

#include "natter/quant.h"
#include "natter/train.h"

/* Floats of W dequantized at once: 256 KiB, small beside any cache-sized GEMM panel, and
 * the whole matrix never exists in float32. */
#define TILE_FLOATS (1 << 16)

static int
tile_rows(const struct tlinear *l)
{
	int r = TILE_FLOATS / l->w.n_in;
	if (r < 1)
		r = 1;
	return r < l->w.n_out ? r : l->w.n_out;
}

size_t
tlinear_scratch_floats(const struct tlinear *l, int T)
{
	size_t n = (size_t)tile_rows(l) * l->w.n_in;
	if (l->lora)
		n += 2 * (size_t)T * l->w.n_in + (size_t)T * l->lora->rank;
	return n;
}

static q_to_float_fn
dequantizer(enum ggml_type type)
{
	const struct q_traits *qt = q_traits_get(type);
	if (!qt->supported)
		return NULL;
	return qt->to_float_fast ? qt->to_float_fast : qt->to_float;
}

/* The dropout decision for element I under SEED: a stateless hash (splitmix64), so the
 * backward finds the forward's mask without storing it. */
static inline int
dropped(uint64_t seed, uint64_t i, float p)
{
	uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (i + 1);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) * (1.0 / 9007199254740992.0) < p;
}

/* XD = drop(X) scaled by 1 / (1 - p); returns X itself when nothing is dropped. */
static const float *
drop_input(const struct tlinear *l, const float *x, int T, int train, uint64_t seed, float *xd)
{
	const float p = l->lora->dropout;
	const size_t n = (size_t)T * l->w.n_in;
	if (!train || p <= 0.0f)
		return x;
	for (size_t i = 0; i < n; i++)
		xd[i] = dropped(seed, i, p) ? 0.0f : x[i] / (1.0f - p);
	return xd;
}

int
tlinear_fwd(const struct tlinear *l, const float *x, int T, int train, uint64_t seed, float *y, float *u,
	    float *scratch)
{
	const int n_in = l->w.n_in, n_out = l->w.n_out, R = tile_rows(l);
	q_to_float_fn to_float = dequantizer(l->w.type);
	float *tile = scratch;

	if (!to_float)
		return -1;
	for (int r0 = 0; r0 < n_out; r0 += R) {
		int rows = n_out - r0 < R ? n_out - r0 : R;
		to_float((const uint8_t *)l->w.data + (size_t)r0 * l->w.row_bytes, tile, (int64_t)rows * n_in);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, rows, n_in, 1.0f, x, n_in, tile, n_in,
		    0.0f, y + r0, n_out);
	}
	if (l->bias)
		for (int t = 0; t < T; t++)
			for (int i = 0; i < n_out; i++)
				y[(size_t)t * n_out + i] += l->bias[i];
	if (l->lora) {
		const struct tlora *lo = l->lora;
		const float *xd = drop_input(l, x, T, train, seed, tile + (size_t)R * n_in);
		/* u = drop(x) A^T (T, r);  y += s u B^T */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, lo->rank, n_in, 1.0f, xd, n_in, lo->a, n_in,
		    0.0f, u, lo->rank);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n_out, lo->rank, lo->scale, u, lo->rank,
		    lo->b, lo->rank, 1.0f, y, n_out);
	}
	return 0;
}

int
tlinear_bwd(const struct tlinear *l, const float *x, int T, int train, uint64_t seed, const float *u,
	    const float *dy, float *dx, float *scratch)
{
	const int n_in = l->w.n_in, n_out = l->w.n_out, R = tile_rows(l);
	q_to_float_fn to_float = dequantizer(l->w.type);
	float *tile = scratch;

	if (!to_float)
		return -1;
	if (dx) {
		/* dx += dy W, one tile of W's rows (a slice of dy's columns) at a time. */
		for (int r0 = 0; r0 < n_out; r0 += R) {
			int rows = n_out - r0 < R ? n_out - r0 : R;
			to_float((const uint8_t *)l->w.data + (size_t)r0 * l->w.row_bytes, tile, (int64_t)rows * n_in);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, n_in, rows, 1.0f, dy + r0, n_out,
			    tile, n_in, 1.0f, dx, n_in);
		}
	}
	if (l->lora) {
		struct tlora *lo = l->lora;
		float *xdbuf = tile + (size_t)R * n_in, *dxd = xdbuf + (size_t)T * n_in;
		float *du = dxd + (size_t)T * n_in;
		const float *xd = drop_input(l, x, T, train, seed, xdbuf);
		const int r = lo->rank;

		/* dB += s dy^T u;  du = s dy B;  dA += du^T drop(x);  d drop(x) = du A */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, r, T, lo->scale, dy, n_out, u, r, 1.0f,
		    lo->db, r);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, r, n_out, lo->scale, dy, n_out, lo->b, r,
		    0.0f, du, r);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, n_in, T, 1.0f, du, r, xd, n_in, 1.0f, lo->da,
		    n_in);
		if (dx) {
			if (xd == x) {
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, n_in, r, 1.0f, du, r, lo->a, n_in,
				    1.0f, dx, n_in);
			} else {
				const float keep = 1.0f / (1.0f - lo->dropout);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, n_in, r, 1.0f, du, r, lo->a, n_in,
				    0.0f, dxd, n_in);
				for (size_t i = 0; i < (size_t)T * n_in; i++)
					if (!dropped(seed, i, lo->dropout))
						dx[i] += dxd[i] * keep;
			}
		}
	}
	return 0;
}
