/* pool.h -- a persistent thread pool for the kernels: run one function on N threads. */
#ifndef NATTER_POOL_H
#define NATTER_POOL_H

struct pool;

/* FN runs on every thread: ITH in [0, NTH); thread 0 is the caller. */
typedef void (*pool_fn)(void *ctx, int ith, int nth);

/* Starts N_THREADS - 1 workers (the caller is the N-th).  NULL on failure. */
struct pool *pool_new(int n_threads);
void pool_free(struct pool *p);
int pool_size(const struct pool *p);
/* Runs FN on all threads and returns when every one has finished.  Only
 * one thread may call pool_run on a given pool at a time. */
void pool_run(struct pool *p, pool_fn fn, void *ctx);

#endif
