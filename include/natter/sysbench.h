/* sysbench.h -- this machine's limits, measured with natter's own kernels: bandwidth, float and int8 peaks. */
#ifndef NATTER_SYSBENCH_H
#define NATTER_SYSBENCH_H

#include <stddef.h>
#include <stdint.h>

struct llm_ctx;

/*
 * Memory is read in two loops of the chosen tier's vector loads: alone
 * (ahead 0), and asking for the line SYSBENCH_AHEAD bytes on as each is
 * read, as the kernels do on some CPUs (cpu.c).  Which is faster depends
 * on the CPU, the hour and what is read, and the rate a bound takes is
 * the faster one's: a loop that under-reads would overstate every share.
 * Zen 5, 2 threads, one slow morning: between the tokens of Qwen2.5-0.5B
 * shapes the read-ahead loop was ahead in 5 runs of 7 (F16, Q4_0: 3-8%
 * in all four), behind in 2 (Q4_K_M, 3%); a 512 MiB buffer alone read
 * faster plainly (means 48.6 and 44.3 GB/s against 41.1 and 40.2).
 */
#define SYSBENCH_AHEAD 4096
/* The rates, GB/s, of reads of BYTES each, N[l] of them in SECS[l]
 * seconds by loop l (0 plain, 1 ahead), into GBPS[l] (0 for a loop that
 * did not run); returns the faster one's. */
double sysbench_faster_read(const double secs[2], const unsigned long n[2], double bytes, double gbps[2]);
/* Reads a 512 MiB buffer on N_THREADS threads, each loop three times by
 * turns (best of the six); returns GB/s, or a negative value if the
 * memory cannot be had. */
double sysbench_read_bandwidth(int n_threads);
struct gguf_file;
struct gguf_tensor;

/* How much of tensor T one generated token reads: nothing worth counting
 * (norms, biases), one row (the embedding table, when a separate output
 * matrix exists: UNTIED_EMBD, from sysbench_untied_embd), or all of it.
 * The one rule for bench's bound and sysbench_read_weights. */
enum sysbench_read { SYSBENCH_READ_NONE, SYSBENCH_READ_ROW, SYSBENCH_READ_ALL };
enum sysbench_read sysbench_token_read(const struct gguf_tensor *t, const struct gguf_tensor *untied_embd);
/* F's embedding table if F has an output matrix of its own, else NULL. */
const struct gguf_tensor *sysbench_untied_embd(const struct gguf_file *f);
/* Reads every weight matrix a generated token reads whole
 * (SYSBENCH_READ_ALL), each once, on CTX's own threads with the tier's
 * vector loads (AHEAD: 0 or SYSBENCH_AHEAD, above), and nothing else:
 * the time a token would take if computing cost nothing.  Returns the
 * seconds; *BYTES (if not NULL) the bytes read.  natter bench --sys calls
 * it between the tokens it times, so that generation's bound is measured
 * at the same moments as generation itself.  The owner of CTX, between
 * evaluations. */
double sysbench_read_weights(struct llm_ctx *ctx, uint64_t *bytes, size_t ahead);
/* Fused multiply-adds on full vectors of the chosen tier, N_THREADS
 * threads at once for about 0.3 s (best of 2): GFLOP/s, or < 0. */
double sysbench_fma_gflops(int n_threads);
/* int8 products as the chosen tier's GEMM does them (vpdpbusd, or
 * maddubs + madd): GOPS (a multiply and an add per byte pair), or < 0. */
double sysbench_int8_gops(int n_threads);
/* bfloat16 pair products as the chosen tier's BF16 GEMM does them
 * (vdpbf16ps): GFLOP/s; 0 where the tier has none (BF16 weights then
 * run at the float peak), < 0 on failure. */
double sysbench_bf16_gflops(int n_threads);
/* OpenBLAS sgemm on N x N matrices (best of 3); returns GFLOP/s or < 0. */
double sysbench_sgemm_gflops(int n);
/* Physical cores (distinct core ids), or online CPUs if that is unknown. */
int sysbench_physical_cores(void);
/* N clamped to 1 .. the CPUs this process may run on.  When it had to be
 * lowered, NOTICE (if not NULL) says so, for the front end to show. */
int sysbench_threads_clamp(int n, char *notice, size_t len);

#endif
