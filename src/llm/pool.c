/* pool.c -- workers claim tasks from a shared counter, spin briefly for the next job, then sleep; a job can be stopped between tasks. */
#include "config.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "llm/pool.h"

/*
 * One job at a time.  Its tasks are claimed through one 64-bit word:
 * generation (24 bits) | number of tasks (20) | next task (20).  A thread
 * that claims task i of generation g with a compare-and-swap knows the job
 * is still g (it cannot end while task i is unfinished), so the job's
 * function and context it reads afterwards are g's.  Nobody waits for a
 * particular thread: a worker the OS has not scheduled simply claims
 * nothing, and the caller does the work.
 *
 * Idle workers spin for POOL_SPIN_NS (a token is many short jobs with
 * little serial work between them), then sleep on a condition variable.
 * The caller, once every task is claimed, waits for the ones still
 * running the same way.
 *
 * A machine with no CPU to spare: there spinning burns CPU time that the
 * threads doing work needed, and where Linux shares the CPU among
 * sessions (autogroups), not threads, two threads of one session get no
 * more of it than one and only wait for each other -- two threads were
 * slower than one (Qwen2.5-0.5B Q4_K_M generation at 8 against 10 t/s
 * beside four busy loops of another session).  So now and then the
 * caller reads the load average: while more threads want to run than
 * there are CPUs (ours included), no thread of the pool spins, and with
 * autogroups the caller runs every job alone (the workers sleep).
 */
#define POOL_SPIN_NS 100000L
#define POOL_CHECK_JOBS 64
#define POOL_CHECK_NS 500000000L
#define POOL_CONTENDED_EXTRA 0.75

#define W_GEN(w) ((uint32_t)((w) >> 40))
#define W_N(w) ((int)(((w) >> 20) & 0xFFFFF))
#define W_NEXT(w) ((int)((w) & 0xFFFFF))

struct pool {
	int n;
	pthread_t *th;
	struct worker *w;
	_Atomic uint64_t work;
	atomic_int done;            /* tasks of the current job finished */
	atomic_int sleepers;        /* workers waiting on cv */
	atomic_int caller_waits;    /* the caller waits on done_cv */
	atomic_int stop;            /* pool_free: workers return */
	atomic_int stopped;         /* the abort function said stop */
	atomic_ulong n_run;         /* calls made (tests) */
	unsigned long n_jobs;       /* pool_run and pool_run_tasks calls (tests) */
	atomic_int contended;       /* no CPU to spare: nobody spins */
	unsigned long n_contended;  /* checks that found it so (tests) */
	unsigned long n_alone;      /* jobs the caller ran alone for it */
	unsigned jobs;              /* jobs since the last check */
	long check_ns;              /* the last check's time */
	int cpus;                   /* pool_cpus_available at the start */
	int autogroup;              /* the kernel shares the CPU by session */
	int forced;                 /* pool_set_contended: no more checks */
	pool_abort_fn abort_fn;
	void *abort_ctx;
	uint32_t gen;               /* the caller's count of jobs */
	/* The current job (written only between jobs, by the caller). */
	pool_fn fn;
	pool_task_fn tfn;
	void *ctx;
	int nth;
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
};

/* Each thread's own (index 0 the caller's), on lines of its own: the
 * bytes to read ahead (pool_read_ahead), written and read by that thread
 * alone but for the count. */
struct worker {
	_Alignas(64) struct pool *p;
	int ith;
	int an, ai;                 /* extents named; the one being read */
	size_t aoff;                /* bytes of extent ai asked for */
	const char *ap[POOL_AHEAD_EXTENTS];
	size_t alen[POOL_AHEAD_EXTENTS];
	atomic_ulong ahead;         /* bytes asked for (tests) */
};

/* The pool whose worker this thread is (NULL on other threads): the
 * abort function is asked on the owner's thread only. */
static _Thread_local const struct pool *tl_worker_of;

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

static long
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/*
 * A wait's spin: call spin_begin, then spin_go after every cpu_relax
 * while the awaited state has not come; spin_go says 0 when the thread
 * should sleep instead: the spin has lasted POOL_SPIN_NS, or the machine
 * is contended (then it does not spin at all).
 */
struct spin {
	long t0;
	int i, on;
};

static void
spin_begin(struct pool *p, struct spin *s)
{
	s->i = 0;
	s->on = !atomic_load_explicit(&p->contended, memory_order_relaxed);
	s->t0 = s->on ? now_ns() : 0;
}

static int
spin_go(struct spin *s)
{
	if (!s->on)
		return 0;
	return (++s->i & 63) != 0 || now_ns() - s->t0 <= POOL_SPIN_NS;
}

/* Every POOL_CHECK_JOBS jobs, and at most every POOL_CHECK_NS, on the
 * caller: whether more threads want to run than there are CPUs this
 * process may use (the one-minute load average, which counts this pool's
 * threads too, above that number plus POOL_CONTENDED_EXTRA). */
static void
check_contention(struct pool *p)
{
	double load;

	if (p->forced || ++p->jobs < POOL_CHECK_JOBS)
		return;
	p->jobs = 0;
	long t = now_ns();
	if (p->check_ns > 0 && t - p->check_ns < POOL_CHECK_NS)
		return;
	p->check_ns = t;
	if (getloadavg(&load, 1) != 1)
		return;
	int c = load > p->cpus + POOL_CONTENDED_EXTRA;
	atomic_store_explicit(&p->contended, c, memory_order_relaxed);
	p->n_contended += c;
}

/* Bytes read ahead at a step: between two looks at what the thread
 * waits for. */
#define POOL_AHEAD_STEP 512

/* Asks for the next POOL_AHEAD_STEP bytes WK has to read ahead; 0 when
 * there are none. */
static int
ahead_step(struct worker *wk)
{
	while (wk->ai < wk->an && wk->aoff >= wk->alen[wk->ai]) {
		wk->ai++;
		wk->aoff = 0;
	}
	if (wk->ai >= wk->an)
		return 0;
	const char *b = wk->ap[wk->ai] + wk->aoff;
	const size_t left = wk->alen[wk->ai] - wk->aoff, n = left < POOL_AHEAD_STEP ? left : POOL_AHEAD_STEP;
	for (size_t o = 0; o < n; o += 64)
		__builtin_prefetch(b + o, 0, 2);
	wk->aoff += n;
	atomic_fetch_add_explicit(&wk->ahead, n, memory_order_relaxed);
	return 1;
}

/* Claims the next task of the job *W (the word as last read) belongs to;
 * -1 if none is left.  *W becomes the word the claim was made in. */
static int
claim(struct pool *p, uint64_t *w)
{
	uint64_t cur = *w;
	for (;;) {
		if (W_NEXT(cur) >= W_N(cur))
			return -1;
		if (atomic_compare_exchange_weak(&p->work, &cur, cur + 1)) {
			*w = cur;
			return W_NEXT(cur);
		}
		/* cur now holds the current word: maybe another job's. */
	}
}

static void
run_task(struct pool *p, int task, int worker)
{
	/* The owner asks before each of its tasks; nobody starts one once
	 * the pool is stopped. */
	if (worker == 0 ? pool_poll(p) : atomic_load_explicit(&p->stopped, memory_order_relaxed))
		return;
	atomic_fetch_add_explicit(&p->n_run, 1, memory_order_relaxed);
	if (p->tfn)
		p->tfn(p->ctx, task, worker);
	else
		p->fn(p->ctx, task, p->nth);
}

/* Runs tasks while any are left, starting from word W. */
static void
drain(struct pool *p, uint64_t w, int worker)
{
	int task;
	while ((task = claim(p, &w)) >= 0) {
		run_task(p, task, worker);
		if (atomic_fetch_add(&p->done, 1) + 1 == W_N(w) && atomic_load(&p->caller_waits)) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_broadcast(&p->done_cv);
			pthread_mutex_unlock(&p->mu);
		}
		w = atomic_load(&p->work);
	}
}

static void *
worker_main(void *arg)
{
	struct worker *wk = arg;
	struct pool *p = wk->p;

	tl_worker_of = p;
	for (;;) {
		uint64_t w = atomic_load(&p->work);
		if (atomic_load(&p->stop))
			return NULL;
		if (W_NEXT(w) < W_N(w)) {
			drain(p, w, wk->ith);
			continue;
		}
		/* Nothing to do: spin until the word changes, then sleep. */
		struct spin s;
		spin_begin(p, &s);
		while (atomic_load(&p->work) == w && !atomic_load(&p->stop)) {
			if (s.on && ahead_step(wk))
				continue;     /* to its end, then the spin */
			cpu_relax();
			if (!spin_go(&s)) {
				pthread_mutex_lock(&p->mu);
				atomic_fetch_add(&p->sleepers, 1);
				while (atomic_load(&p->work) == w && !atomic_load(&p->stop))
					pthread_cond_wait(&p->cv, &p->mu);
				atomic_fetch_sub(&p->sleepers, 1);
				pthread_mutex_unlock(&p->mu);
				break;
			}
		}
	}
}

int
pool_cpus_available(void)
{
#ifdef CPU_COUNT
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
#endif
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : (int)n;
}

/* Whether Linux shares the CPU among sessions (autogroups), not threads. */
static int
autogroup_enabled(void)
{
	FILE *f = fopen("/proc/sys/kernel/sched_autogroup_enabled", "r");
	int on = 0;
	if (f) {
		if (fscanf(f, "%d", &on) != 1)
			on = 0;
		fclose(f);
	}
	return on;
}

struct pool *
pool_new(int n_threads)
{
	struct pool *p = calloc(1, sizeof(*p));
	int cpus = pool_cpus_available();

	if (!p)
		return NULL;
	if (n_threads > cpus)
		n_threads = cpus;
	if (n_threads < 1)
		n_threads = 1;
	p->n = n_threads;
	p->cpus = cpus;
	p->autogroup = autogroup_enabled();
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	pthread_cond_init(&p->done_cv, NULL);
	p->th = calloc(n_threads, sizeof(*p->th));
	p->w = aligned_alloc(64, n_threads * sizeof(*p->w));
	if (p->w)
		memset(p->w, 0, n_threads * sizeof(*p->w));
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
	pthread_cond_destroy(&p->done_cv);
	free(p->th);
	free(p->w);
	free(p);
}

int
pool_size(const struct pool *p)
{
	return p->n;
}

static void
run_job(struct pool *p, int n_tasks)
{
	uint64_t w;

	p->n_jobs++;
	check_contention(p);
	if (p->n == 1 || n_tasks <= 1 || n_tasks > POOL_MAX_TASKS ||
	    (p->autogroup && atomic_load_explicit(&p->contended, memory_order_relaxed))) {
		p->n_alone += p->n > 1 && n_tasks > 1 && n_tasks <= POOL_MAX_TASKS;
		for (int i = 0; i < n_tasks && !pool_stopped(p); i++)
			run_task(p, i, 0);
		return;
	}
	/* Asked once as the job starts, too: the workers may claim every
	 * task of a short job, and the owner would not be asked at all (on
	 * a model of two small layers, 7 calls a batch in some runs and
	 * more than 12 in others). */
	if (pool_poll(p))
		return;
	p->gen = (p->gen + 1) & 0xFFFFFF;
	atomic_store(&p->done, 0);
	w = ((uint64_t)p->gen << 40) | ((uint64_t)n_tasks << 20);
	atomic_store(&p->work, w);   /* publishes fn, ctx and the counts */
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	drain(p, w, 0);
	if (atomic_load(&p->done) == n_tasks)
		return;
	/* Tasks still run on workers: spin a little, then sleep. */
	struct spin s;
	spin_begin(p, &s);
	while (atomic_load(&p->done) < n_tasks) {
		if (s.on && ahead_step(&p->w[0]))
			continue;
		cpu_relax();
		if (!spin_go(&s)) {
			pthread_mutex_lock(&p->mu);
			atomic_store(&p->caller_waits, 1);
			while (atomic_load(&p->done) < n_tasks)
				pthread_cond_wait(&p->done_cv, &p->mu);
			atomic_store(&p->caller_waits, 0);
			pthread_mutex_unlock(&p->mu);
			break;
		}
	}
}

void
pool_run(struct pool *p, pool_fn fn, void *ctx)
{
	p->fn = fn;
	p->tfn = NULL;
	p->ctx = ctx;
	p->nth = p->n;
	run_job(p, p->n);
}

void
pool_run_tasks(struct pool *p, pool_task_fn fn, void *ctx, int n_tasks)
{
	p->fn = NULL;
	p->tfn = fn;
	p->ctx = ctx;
	p->nth = p->n;
	run_job(p, n_tasks);
}

#define R_LO(w) ((uint32_t)(w))
#define R_HI(w) ((uint32_t)((w) >> 32))
#define R_W(lo, hi) ((uint64_t)(lo) | (uint64_t)(hi) << 32)

void
pool_range_set(struct pool_range *r, uint32_t lo, uint32_t hi)
{
	atomic_store(&r->w, R_W(lo, hi));
}

static uint32_t
range_left(uint64_t w)
{
	return R_LO(w) < R_HI(w) ? R_HI(w) - R_LO(w) : 0;
}

uint32_t
pool_range_left(struct pool_range *r)
{
	return range_left(atomic_load(&r->w));
}

/*
 * No word comes back once changed (no ABA): an owner's lo only grows, a
 * thief's cut only lowers hi, and a range emptied and given new units
 * gets units no range had left before.
 */
int
pool_range_next(struct pool_range *r, int n, int self, uint32_t min_steal, pool_want_fn want, const void *ctx,
		uint32_t *lo, uint32_t *hi)
{
	struct pool_range *mine = &r[self];

	if (min_steal < 2)
		min_steal = 2;
	for (;;) {
		uint64_t w = atomic_load(&mine->w);
		while (R_LO(w) < R_HI(w)) {
			const uint32_t l = R_LO(w), h = R_HI(w);
			uint32_t c = want(ctx, l, h);
			c = c < 1 ? 1 : c > h - l ? h - l : c;
			if (atomic_compare_exchange_weak(&mine->w, &w, R_W(l + c, h))) {
				*lo = l;
				*hi = l + c;
				return 1;
			}
		}
		int v = -1;
		uint32_t most = 0;
		uint64_t x = 0;
		for (int i = 0; i < n; i++) {
			const uint64_t y = atomic_load(&r[i].w);
			const uint32_t left = range_left(y);
			if (i != self && left >= min_steal && left > most) {
				v = i;
				most = left;
				x = y;
			}
		}
		if (v < 0)
			return 0;
		const uint32_t l = R_LO(x), h = R_HI(x), m = h - (h - l) / 2;
		/* Nobody takes from an empty range: ours is set after the cut. */
		if (atomic_compare_exchange_strong(&r[v].w, &x, R_W(l, m)))
			atomic_store(&mine->w, R_W(m, h));
	}
}

void
pool_read_ahead(struct pool *p, int worker, const void *const *ptr, const size_t *len, int n)
{
	struct worker *wk = &p->w[worker];

	n = n < 0 ? 0 : n > POOL_AHEAD_EXTENTS ? POOL_AHEAD_EXTENTS : n;
	for (int i = 0; i < n; i++) {
		wk->ap[i] = ptr[i];
		wk->alen[i] = len[i];
	}
	wk->an = n;
	wk->ai = 0;
	wk->aoff = 0;
}

unsigned long
pool_ahead_bytes(const struct pool *p)
{
	unsigned long b = 0;
	for (int i = 0; i < p->n; i++)
		b += atomic_load_explicit(&p->w[i].ahead, memory_order_relaxed);
	return b;
}

void
pool_set_abort(struct pool *p, pool_abort_fn fn, void *ctx)
{
	p->abort_fn = fn;
	p->abort_ctx = ctx;
}

int
pool_poll(struct pool *p)
{
	if (atomic_load_explicit(&p->stopped, memory_order_relaxed))
		return 1;
	/* A worker never asks: abort_fn is the caller's, changed between jobs. */
	if (tl_worker_of == p || !p->abort_fn || !p->abort_fn(p->abort_ctx))
		return 0;
	atomic_store(&p->stopped, 1);
	return 1;
}

int
pool_stopped(const struct pool *p)
{
	return atomic_load_explicit(&p->stopped, memory_order_relaxed);
}

void
pool_stop_clear(struct pool *p)
{
	atomic_store(&p->stopped, 0);
}

unsigned long
pool_tasks_run(const struct pool *p)
{
	return atomic_load_explicit(&p->n_run, memory_order_relaxed);
}

unsigned long
pool_jobs(const struct pool *p)
{
	return p->n_jobs;
}

void
pool_set_contended(struct pool *p, int contended, int autogroup)
{
	p->forced = 1;
	p->autogroup = autogroup;
	atomic_store(&p->contended, contended);
}

unsigned long
pool_jobs_alone(const struct pool *p)
{
	return p->n_alone;
}

unsigned long
pool_contended(const struct pool *p, int *now)
{
	if (now)
		*now = atomic_load_explicit(&p->contended, memory_order_relaxed);
	return p->n_contended;
}

double
pool_worker_cpu_seconds(const struct pool *p, int i)
{
	clockid_t cid;
	struct timespec ts;

	if (i < 1 || i >= p->n || pthread_getcpuclockid(p->th[i], &cid) != 0 || clock_gettime(cid, &ts) != 0)
		return -1;
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}
