/* cpu.h -- the CPU tiers: one table of what each needs, how to detect it, and its kernels. */
#ifndef NATTER_CPU_H
#define NATTER_CPU_H

struct q_kernels;

/* In order of preference: a higher tier is chosen over a lower one. */
enum cpu_tier {
	CPU_SCALAR,
	CPU_AVX2,           /* AVX2 + FMA + F16C */
	CPU_AVXVNNI,        /* + AVX-VNNI (VEX vpdpbusd, 256-bit) */
	CPU_AVX512,         /* AVX-512 F/BW/VL/DQ (+ AVX2, FMA, F16C) */
	CPU_AVX512VNNI,     /* + AVX-512 VNNI */
	CPU_AVX512BF16,     /* + AVX-512 BF16 */
	CPU_AMX,            /* + AMX-TILE and AMX-INT8 (the int8 GEMM on tiles) */
	CPU_TIER_COUNT
};

struct cpu_tier_info {
	const char *name;                       /* the NATTER_CPU value */
	const char *isa;                        /* what it needs, for people */
	int (*detect)(void);                    /* 1 if this CPU and OS have it */
	const struct q_kernels *(*kernels)(void);   /* NULL result: not built */
};

/* The table entry of tier T (T < CPU_TIER_COUNT). */
const struct cpu_tier_info *cpu_tier_get(int t);

#endif
