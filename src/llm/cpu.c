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

/* Feature bits, read once by cpu_probe. */
static struct {
	int avx, avx2, fma, f16c, os_avx, os_avx512;
	int avx512f, avx512dq, avx512bw, avx512vl, avx512vnni, avx512bf16, avxvnni;
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
	if (max < 1 || !__get_cpuid(1, &a, &b, &c, &d))
		return;
	feat.fma = (c >> 12) & 1;
	feat.avx = (c >> 28) & 1;
	feat.f16c = (c >> 29) & 1;
	if ((c >> 27) & 1) {   /* OSXSAVE: the OS saves the registers we would use */
		unsigned long long x = xgetbv0();
		feat.os_avx = (x & 0x6) == 0x6;
		feat.os_avx512 = feat.os_avx && (x & 0xE0) == 0xE0;
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

#else   /* not x86: only the portable tier */

static void cpu_probe(void) { }
static int has_avx2(void) { return 0; }
static int has_avxvnni(void) { return 0; }
static int has_avx512(void) { return 0; }
static int has_avx512vnni(void) { return 0; }
static int has_avx512bf16(void) { return 0; }

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
};

const struct cpu_tier_info *
cpu_tier_get(int t)
{
	return t >= 0 && t < CPU_TIER_COUNT ? &tiers[t] : NULL;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int avail[CPU_TIER_COUNT];
static int best, chosen;
static const struct q_kernels *active;
static char init_err[256];

static void
cpu_init_once(void)
{
	const char *env = getenv("NATTER_CPU");

	cpu_probe();
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
		if (want < 0) {
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
