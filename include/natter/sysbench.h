/* sysbench.h -- this machine's limits, measured: memory read bandwidth and sgemm throughput. */
#ifndef NATTER_SYSBENCH_H
#define NATTER_SYSBENCH_H

/* Reads a 512 MiB buffer on N_THREADS threads (best of 3); returns GB/s, or
 * a negative value if the memory cannot be had. */
double sysbench_read_bandwidth(int n_threads);
/* OpenBLAS sgemm on N x N matrices (best of 3); returns GFLOP/s or < 0. */
double sysbench_sgemm_gflops(int n);
/* Physical cores (distinct core ids), or online CPUs if that is unknown. */
int sysbench_physical_cores(void);

#endif
