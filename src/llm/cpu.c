/* cpu.c -- CPU tiers: detected once (cpuid, xgetbv), chosen once, NATTER_CPU to force a lower one. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "natter/quant.h"
#include "llm/cpu.h"
#include "llm/quant-impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* The CPU's maker, as cpuid names it ("GenuineIntel"; "" if unknown). */
static char vendor[13];

#if defined(__x86_64__) || defined(__i386__)
/* Feature bits, read once by cpu_probe. */
static struct {
	int avx, avx2, fma, f16c, os_avx, os_avx512;
	int avx512f, avx512dq, avx512bw, avx512vl, avx512vnni, avx512bf16, avxvnni;
	int amx_tile, amx_int8, os_amx;
} feat;

static unsigned long long
xgetbv0(void)
{
	unsigned int lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((unsigned long long)hi << 32) | lo;
}

static void
cpu_probe(void)
{
	unsigned int a, b, c, d, max;

	memset(&feat, 0, sizeof(feat));
	max = __get_cpuid_max(0, NULL);
	if (max >= 1) {
		__cpuid(0, a, b, c, d);
		memcpy(vendor, &b, 4);
		memcpy(vendor + 4, &d, 4);
		memcpy(vendor + 8, &c, 4);
	}
	if (max < 1 || !__get_cpuid(1, &a, &b, &c, &d))
		return;
	feat.fma = (c >> 12) & 1;
	feat.avx = (c >> 28) & 1;
	feat.f16c = (c >> 29) & 1;
	if ((c >> 27) & 1) {   /* OSXSAVE: the OS saves the registers we would use */
		unsigned long long x = xgetbv0();
		feat.os_avx = (x & 0x6) == 0x6;
		feat.os_avx512 = feat.os_avx && (x & 0xE0) == 0xE0;
		feat.os_amx = ((x >> 17) & 3) == 3;   /* XTILECFG, XTILEDATA */
	}
	if (max < 7)
		return;
	__cpuid_count(7, 0, a, b, c, d);
	feat.avx2 = (b >> 5) & 1;
	feat.avx512f = (b >> 16) & 1;
	feat.avx512dq = (b >> 17) & 1;
	feat.avx512bw = (b >> 30) & 1;
	feat.avx512vl = (b >> 31) & 1;
	feat.avx512vnni = (c >> 11) & 1;
	feat.amx_tile = (d >> 24) & 1;
	feat.amx_int8 = (d >> 25) & 1;
	if (a >= 1) {
		__cpuid_count(7, 1, a, b, c, d);
		feat.avxvnni = (a >> 4) & 1;
		feat.avx512bf16 = (a >> 5) & 1;
	}
}

static int
has_avx2(void)
{
	return feat.os_avx && feat.avx && feat.avx2 && feat.fma && feat.f16c;
}

static int
has_avxvnni(void)
{
	return has_avx2() && feat.avxvnni;
}

static int
has_avx512(void)
{
	return has_avx2() && feat.os_avx512 && feat.avx512f && feat.avx512dq && feat.avx512bw && feat.avx512vl;
}

static int
has_avx512vnni(void)
{
	return has_avx512() && feat.avx512vnni;
}

static int
has_avx512bf16(void)
{
	return has_avx512vnni() && feat.avx512bf16;
}

/* AMX's tile data is large (8 KiB a thread): Linux hands it to a process
 * that asks (arch_prctl ARCH_REQ_XCOMP_PERM, once, for all its threads);
 * without that a tile instruction is SIGILL.  Asked only when the CPU and
 * OS have the rest. */
static int
has_amx(void)
{
	if (!has_avx512bf16() || !feat.amx_tile || !feat.amx_int8 || !feat.os_amx)
		return 0;
#if defined(__linux__) && defined(__x86_64__)
	return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
	return 0;
#endif
}

#else   /* not x86: only the portable tier */

static void cpu_probe(void) { }
static int has_avx2(void) { return 0; }
static int has_avxvnni(void) { return 0; }
static int has_avx512(void) { return 0; }
static int has_avx512vnni(void) { return 0; }
static int has_avx512bf16(void) { return 0; }
static int has_amx(void) { return 0; }

#endif

static int
has_scalar(void)
{
	return 1;
}

static const struct cpu_tier_info tiers[CPU_TIER_COUNT] = {
	[CPU_SCALAR] = { "scalar", "portable C (any CPU)", has_scalar, q_kern_scalar },
	[CPU_AVX2] = { "avx2", "AVX2, FMA, F16C", has_avx2, q_kern_avx2 },
	[CPU_AVXVNNI] = { "avxvnni", "AVX2, FMA, F16C, AVX-VNNI", has_avxvnni, q_kern_avxvnni },
	[CPU_AVX512] = { "avx512", "AVX-512 F/BW/VL/DQ, FMA, F16C", has_avx512, q_kern_avx512 },
	[CPU_AVX512VNNI] = { "avx512vnni", "AVX-512 F/BW/VL/DQ and VNNI", has_avx512vnni, q_kern_avx512vnni },
	[CPU_AVX512BF16] = { "avx512bf16", "AVX-512 F/BW/VL/DQ, VNNI and BF16", has_avx512bf16, q_kern_avx512bf16 },
	[CPU_AMX] = { "amx", "AVX-512 VNNI, BF16 and AMX-INT8", has_amx, q_kern_amx },
};

const struct cpu_tier_info *
cpu_tier_get(int t)
{
	return t >= 0 && t < CPU_TIER_COUNT ? &tiers[t] : NULL;
}

/*
 * The packed GEMVs' read-ahead (struct q_ahead, quant-impl.h) by the CPU's
 * maker: the first row whose vendor is the CPU's (NULL: any).  AMD's rows
 * were measured on Zen 3 (AVX2) and Zen 5 (the rest; quant-x86.h tells
 * how).  Intel's on 2 cores of an "Intel Xeon Processor" (KVM guest,
 * family 6 model 167; AVX-512 with VNNI, BF16 and AMX; memory read about
 * 30 GB/s), 2026-12-05: natter bench -p 0 -n 64 -r 3, 2 threads, tg64 t/s
 * in two rounds, Qwen2.5-0.5B shapes but where named.  There the
 * hardware's prefetch alone left every tier well behind the memory:
 *   avx512bf16, b32 (k 4096): Q4_0 0: 71.4 70.9, 1024: 85.2 83.7,
 *     1536: 83.8 80.8, 2048: 87.1 84.1 84.3 84.8, 3072: 80.4 81.5,
 *     4096: 78.6 75.9; Q8_0 0: 51.0 50.0, 1024: 59.5 56.5, 2048: 60.1
 *     58.8 58.0 58.7, 3072: 55.2 53.5, 4096: 55.5 54.1.
 *   avx512bf16, k (b32 2048), Qwen3-0.6B Q4_K_M (real Q4_K and Q6_K):
 *     0: 59.8 59.1, 512: 63.5 63.2, 1024: 64.3 62.0 63.9 63.8,
 *     2048: 61.8 61.6, 4096: 58.7 59.6; AMD's row (0, 4096): 59.1.
 *     Qwen2.5-0.5B Q4_K_M (mostly Q5_0), AMD's row 60.0 59.5 against
 *     73.7 73.7 with (2048, 1024).
 *   avxvnni, AMD's row (0, 4096) against (2048, 1024): Q4_0 67.8 66.9
 *     against 81.6 82.0; Qwen3-0.6B Q4_K_M 45.9 45.7 against 63.1 62.9.
 *   avx2, both the same: Q4_0 0: 62.1 63.7, 1024 (AMD's row): 78.4 77.9,
 *     2048: 83.4 83.7; Qwen2.5-0.5B Q4_K_M 55.5 55.1, 67.2 67.8, 71.1
 *     71.2; Qwen3-0.6B Q4_K_M with b32 2048, k 1024: 63.7 62.7, k 2048:
 *     62.6 62.2.
 *   f (F32, F16 and BF16 rows, 2026-12-05 later, the same machine):
 *     Qwen2.5-0.5B F16 tg64, two rounds, avx2: 0: 24.2 23.9,
 *     1024: 27.9 28.5, 1536: 29.4 29.3, 2048: 28.6 29.3 29.1 29.0,
 *     3072: 27.7 27.8, 4096: 24.2 24.1; avx512bf16: 0: 26.9 26.4,
 *     1024: 28.2 28.5, 1536: 29.2 30.0, 2048: 30.0 29.9 29.9 30.7,
 *     3072: 30.5 31.0, 4096: 27.9 27.9.  kbench 896 x 4864, one token,
 *     2 threads, 16 copies, share of the weights' rate read alone,
 *     0 against 2048, two rounds: avx2 F16 74% 74% against 88% 91%,
 *     BF16 66% 68% against 86% 86%, F32 86% 87% against 103% 98%;
 *     avx512bf16 F16 85% 86% against 102% 93%, BF16 85% 83% against
 *     91% 93%, F32 93% 94% against 108% 105%; packed rows (as loaded
 *     where natter's tiles run their batches) avx2 F16 95% 86% against
 *     106% 101%, avx512bf16 91% 91% against 102% 101%.
 *   l2 (the same machine, 2026-12-06; b32, k and f as Intel's row), in
 *     K-quant groups the column after the one read ahead:
 *     kbench 1048576 x 1024, one token, 2 threads, share of the weights'
 *     rate read alone, without against with (two rounds): avx512bf16
 *     Q6_K 82% 83% against 95% 94%, Q4_K 94% 92% against 99% 101%, Q5_K
 *     96% against 99%, Q3_K 78% against 80%, Q2_K 80% against 77%,
 *     IQ4_XS (131072 x 1024, 8 copies) 82% against 89%; avxvnni Q6_K
 *     88% 86% against 91% 93%, Q4_K 85% 85% against 86% 93%; avx2 Q6_K
 *     85% 88% against 84% 86%, Q4_K 83% 86% against 87% 93%, IQ4_XS 80%
 *     against 76%.  Asking for the rest of the column into L1 in a
 *     second burst half way through it instead did as well on
 *     avx512bf16's Q6_K (91% 93%) but worse on Q3_K and IQ4_XS; the
 *     column after into L2 alone (no L1 burst), 78% 79%.  Qwen3-0.6B
 *     Q4_K_M tg64 (bench --sys, three rounds, share of the bound):
 *     avx512bf16 80% 80% 79% against 87% 86% 88%, avxvnni 76% 78% 77%
 *     against 77% 79% 77%, avx2 74% 75% 76% against 78% 76% 81%.
 *     In 32-weight block groups (a column there is 144-272 bytes), the
 *     2048 bytes after the 2048 read ahead (PK_L2_B32; 4096 after, or
 *     the next column, did no better on avx2's kbench): tg64 as a share
 *     of the bound, pairs without / with, avx2 Qwen2.5-0.5B Q4_K_M
 *     (mostly Q5_0) 84/86, 82/87, 85/85, 84/87, Q4_0 86/88, 90/90;
 *     avx512bf16 Q4_0 92/94, 92/98, Q8_0 99/99, 101/99.
 * Other makers get AMD's distances, measured on more machines; the
 * float rows' 0 there (8 KiB on Zen 5's packed rows: quant-x86.h), and
 * no L2 read.  Both measured on 2 cores of a Zen 5 "AMD EPYC" (family
 * 26 model 2, avx512bf16 tier), 2026-12-06, in a noisy hour (the
 * memory read 33-58 GB/s from one run to the next), with AMD's row and
 * the one value changed: Qwen3-0.6B Q4_K_M tg64 t/s in five
 * interleaved rounds, l2 0 against 1: 124.0 110.7 111.4 97.9 97.9
 * against 109.9 106.6 111.3 94.7 95.2 (behind in four); kbench 1048576
 * x 1024, 2 threads, the products' rate in GB/s, three rounds: Q6_K 53.0
 * 52.1 53.7 against 57.1 58.2 59.2, Q4_K 49.7 41.1 45.0 against 33.6 57.7
 * 56.8.  Float rows, Qwen2.5-0.5B F16 tg64 t/s, three rounds, f 0,
 * 2048 and 8192: 34.4 34.4 38.8, 36.5 28.8 33.8, 41.2 34.2 38.3.
 */
static const struct ahead_rule {
	const char *vendor, *why;
	struct q_ahead avx2, wide;
} ahead_rules[] = {
	{ "GenuineIntel", "measured on Intel CPUs", { 2048, 1024, 2048, 1 }, { 2048, 1024, 2048, 1 } },
	{ NULL, "measured on AMD CPUs: the default", { 1024, 1024, 0, 0 }, { 0, 4096, 0, 0 } },
};

struct q_ahead q_ahead_avx2, q_ahead_wide;
static const char *ahead_why;

/* Sets the read-ahead from the table or NATTER_PREFETCH=B32,K[,F[,L2]]
 * (both tier families; without F or L2 the table's stay); 0, or -1 with
 * init_err filled. */
static int
ahead_init(char *err, size_t errlen)
{
	const char *env = getenv("NATTER_PREFETCH");
	const struct ahead_rule *r = ahead_rules;

	while (r->vendor && strcmp(r->vendor, vendor) != 0)
		r++;
	q_ahead_avx2 = r->avx2;
	q_ahead_wide = r->wide;
	ahead_why = r->why;
	if (!env || !*env)
		return 0;
	/* B32, K, F and L2: comma-separated, the first three 0 to 65536, L2 0
	 * or 1; none empty, no fifth. */
	long v[4];
	int n = 0, bad = 0;
	const char *p = env;
	char *end;
	do {
		long x = strtol(p, &end, 10);
		bad |= end == p || x < 0 || x > (n == 3 ? 1 : 65536) || n == 4;
		if (n < 4)
			v[n++] = x;
		p = end + 1;
	} while (*end == ',');
	if (bad || n < 2 || *end) {
		snprintf(err, errlen, "NATTER_PREFETCH=%.40s is not B32,K[,F[,L2]]: the bytes read ahead in 32-weight "
		    "block groups, in K-quant ones and in float rows, 0 to 65536 each, and 1 or 0 for whether the "
		    "groups also read past that into L2 (e.g. 2048,1024,2048,1)", env);
		return -1;
	}
	q_ahead_avx2.b32 = q_ahead_wide.b32 = (int)v[0];
	q_ahead_avx2.k = q_ahead_wide.k = (int)v[1];
	if (n >= 3)
		q_ahead_avx2.f = q_ahead_wide.f = (int)v[2];
	if (n == 4)
		q_ahead_avx2.l2 = q_ahead_wide.l2 = (int)v[3];
	ahead_why = "NATTER_PREFETCH";
	return 0;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int avail[CPU_TIER_COUNT];
static int best, chosen;
static const struct q_kernels *active;
static char init_err[384];

static void
cpu_init_once(void)
{
	const char *env = getenv("NATTER_CPU");

	cpu_probe();
	ahead_init(init_err, sizeof(init_err));
	for (int t = 0; t < CPU_TIER_COUNT; t++) {
		avail[t] = tiers[t].detect() && tiers[t].kernels() != NULL;
		if (avail[t])
			best = t;
	}
	chosen = best;
	if (env && *env) {
		int want = -1;
		for (int t = 0; t < CPU_TIER_COUNT; t++)
			if (strcasecmp(env, tiers[t].name) == 0)
				want = t;
		if (init_err[0]) {
			/* NATTER_PREFETCH's message stands */
		} else if (want < 0) {
			char names[128] = "";
			for (int t = 0; t < CPU_TIER_COUNT; t++) {
				strncat(names, " ", sizeof(names) - strlen(names) - 1);
				strncat(names, tiers[t].name, sizeof(names) - strlen(names) - 1);
			}
			snprintf(init_err, sizeof(init_err), "NATTER_CPU=%.40s is not a CPU tier (tiers:%s)", env,
			    names);
		} else if (!avail[want]) {
			snprintf(init_err, sizeof(init_err), "NATTER_CPU=%s: this CPU lacks %s (best here: %s)",
			    tiers[want].name, tiers[want].isa, tiers[best].name);
		} else {
			chosen = want;
		}
	}
	active = tiers[chosen].kernels();
	/* The public traits point at the chosen tier's kernels. */
	for (int t = 0; t < GGML_TYPE_COUNT; t++) {
		struct q_traits *qt = &q_traits_table[t];
		qt->vec_dot = active->t[t].vec_dot;
		qt->to_float_fast = active->t[t].to_float;
		qt->from_float_fast = qt->from_float;
	}
	q_traits_table[GGML_TYPE_Q8_0].from_float_fast = active->act_q8_0;
	q_traits_table[GGML_TYPE_Q8_1].from_float_fast = active->act_q8_1;
	q_traits_table[GGML_TYPE_Q8_K].from_float_fast = active->act_q8_K;
}

int
q_cpu_init(char *err, size_t errlen)
{
	pthread_once(&once, cpu_init_once);
	if (init_err[0]) {
		if (err && errlen)
			snprintf(err, errlen, "%s", init_err);
		return -1;
	}
	return 0;
}

void
q_init(int unused)
{
	(void)unused;
	pthread_once(&once, cpu_init_once);
}

const struct q_kernels *
q_kern(void)
{
	pthread_once(&once, cpu_init_once);
	return active;
}

const struct q_kernels *
q_kern_tier(int t)
{
	pthread_once(&once, cpu_init_once);
	return t >= 0 && t < CPU_TIER_COUNT && avail[t] ? tiers[t].kernels() : NULL;
}

int
q_cpu_tier_count(void)
{
	return CPU_TIER_COUNT;
}

const char *
q_cpu_tier_name(int t)
{
	return t >= 0 && t < CPU_TIER_COUNT ? tiers[t].name : NULL;
}

const char *
q_cpu_tier_isa(int t)
{
	return t >= 0 && t < CPU_TIER_COUNT ? tiers[t].isa : NULL;
}

int
q_cpu_tier_available(int t)
{
	pthread_once(&once, cpu_init_once);
	return t >= 0 && t < CPU_TIER_COUNT && avail[t];
}

int
q_cpu_tier_best(void)
{
	pthread_once(&once, cpu_init_once);
	return best;
}

int
q_cpu_tier_chosen(void)
{
	pthread_once(&once, cpu_init_once);
	return chosen;
}

const char *
q_cpu_features(void)
{
	pthread_once(&once, cpu_init_once);
	return tiers[chosen].name;
}

void
q_cpu_prefetch(int tier, int *b32, int *k, int *f, int *l2, const char **why)
{
	pthread_once(&once, cpu_init_once);
	const struct q_ahead *a = tier >= CPU_AVXVNNI ? &q_ahead_wide : &q_ahead_avx2;
	*b32 = tier > CPU_SCALAR ? a->b32 : 0;
	*k = tier > CPU_SCALAR ? a->k : 0;
	*f = tier > CPU_SCALAR ? a->f : 0;
	*l2 = tier > CPU_SCALAR && (a->b32 || a->k) ? a->l2 : 0;
	*why = ahead_why;
}
