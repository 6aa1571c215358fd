/* pool.c -- workers spin briefly for the next job (a token is many short jobs), then sleep. */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "llm/pool.h"

#define POOL_SPIN 20000

struct pool {
	int n;
	pthread_t *th;
	atomic_uint gen;
	atomic_int pending;
	atomic_int sleepers;
	atomic_int stop;
	pool_fn fn;
	void *ctx;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct worker *w;
};

struct worker {
	struct pool *p;
	int ith;
};

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->p;
	unsigned seen = 0;

	for (;;) {
		int spins = 0;
		while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) {
			if (++spins < POOL_SPIN) {
				cpu_relax();
				continue;
			}
			pthread_mutex_lock(&p->mu);
			atomic_fetch_add(&p->sleepers, 1);
			while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
				pthread_cond_wait(&p->cv, &p->mu);
			atomic_fetch_sub(&p->sleepers, 1);
			pthread_mutex_unlock(&p->mu);
		}
		if (atomic_load(&p->stop))
			return NULL;
		seen = atomic_load(&p->gen);
		p->fn(p->ctx, w->ith, p->n);
		atomic_fetch_sub(&p->pending, 1);
	}
}

struct pool *
pool_new(int n_threads)
{
	struct pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	if (n_threads < 1)
		n_threads = 1;
	p->n = n_threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->th = calloc(n_threads, sizeof(*p->th));
	p->w = calloc(n_threads, sizeof(*p->w));
	if (!p->th || !p->w) {
		free(p->th);
		free(p->w);
		free(p);
		return NULL;
	}
	for (int i = 1; i < n_threads; i++) {
		p->w[i].p = p;
		p->w[i].ith = i;
		if (pthread_create(&p->th[i], NULL, worker_main, &p->w[i]) != 0) {
			p->n = i;     /* run with the threads we got */
			break;
		}
	}
	return p;
}

void
pool_free(struct pool *p)
{
	if (!p)
		return;
	atomic_store(&p->stop, 1);
	pthread_mutex_lock(&p->mu);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->th);
	free(p->w);
	free(p);
}

int
pool_size(const struct pool *p)
{
	return p->n;
}

void
pool_run(struct pool *p, pool_fn fn, void *ctx)
{
	if (p->n == 1) {
		fn(ctx, 0, 1);
		return;
	}
	p->fn = fn;
	p->ctx = ctx;
	atomic_store(&p->pending, p->n - 1);
	atomic_fetch_add(&p->gen, 1);
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	fn(ctx, 0, p->n);
	while (atomic_load(&p->pending) > 0)
		cpu_relax();
}
