/* quant-avx2.c -- AVX2/FMA/F16C kernels, compiled for those ISAs and chosen at run time. */
#include "config.h"

#include "llm/quant-impl.h"

int
q_avx2_available(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	    __builtin_cpu_supports("f16c");
#else
	return 0;
#endif
}

void
q_avx2_install(struct q_traits *table)
{
	(void)table;
}
