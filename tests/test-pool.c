/* test-pool.c -- the kernels' thread pool: every task once, per-worker exclusion, progress beside busy threads, idle workers asleep, stops between tasks, ranges claimed in order and stolen from the back; the buffers its threads write start on a cache line. */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm/hugemem.h"
#include "llm/matmul.h"
#include "llm/pool.h"
#include "test.h"

enum { MAX_TASKS = 300 };

struct job {
	atomic_int runs[MAX_TASKS];
	atomic_int busy[64];      /* per worker: inside a task */
	atomic_int overlap;       /* a worker id used by two calls at once */
	atomic_int by_caller;
	int spin;                 /* work per task */
	atomic_uint sink;          /* keeps the work (relaxed: any thread) */
};

static void
task_fn(void *arg, int task, int worker)
{
	struct job *j = arg;
	if (atomic_fetch_add(&j->busy[worker], 1) != 0)
		atomic_fetch_add(&j->overlap, 1);
	atomic_fetch_add(&j->runs[task], 1);
	if (worker == 0)
		atomic_fetch_add(&j->by_caller, 1);
	unsigned s = (unsigned)task;
	for (int i = 0; i < j->spin; i++)
		s = s * 1664525u + 1013904223u;
	atomic_store_explicit(&j->sink, s, memory_order_relaxed);
	atomic_fetch_sub(&j->busy[worker], 1);
}

static void
ith_fn(void *arg, int ith, int nth)
{
	struct job *j = arg;
	atomic_fetch_add(&j->runs[ith], 1);
	if (nth > MAX_TASKS)
		atomic_fetch_add(&j->overlap, 1);
}

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct control {
	atomic_int stop;
	volatile unsigned long count;
};

static void *
control_main(void *arg)
{
	struct control *c = arg;
	while (!atomic_load(&c->stop))
		c->count++;
	return NULL;
}

/*
 * CPU seconds the workers of P use over 0.3 s without jobs, and (in
 * *CONTROL) those of a thread that busy-loops over the same window: a
 * worker that never slept would get about as much as the control, on a
 * quiet machine or a busy one.
 */
static double
idle_cpu(struct pool *p, double *control)
{
	struct control c = { 0, 0 };
	pthread_t th;
	clockid_t cid;
	struct timespec ts = { 0, 300000000L }, c0 = { 0, 0 }, c1 = { 0, 0 };
	double before = 0, after = 0;
	int started = pthread_create(&th, NULL, control_main, &c) == 0;

	for (int i = 1; i < pool_size(p); i++)
		before += pool_worker_cpu_seconds(p, i);
	if (started && pthread_getcpuclockid(th, &cid) == 0)
		clock_gettime(cid, &c0);
	/* The observation window (not a wait for another thread's state). */
	while (nanosleep(&ts, &ts) != 0)
		;
	if (started && pthread_getcpuclockid(th, &cid) == 0)
		clock_gettime(cid, &c1);
	for (int i = 1; i < pool_size(p); i++)
		after += pool_worker_cpu_seconds(p, i);
	atomic_store(&c.stop, 1);
	if (started)
		pthread_join(th, NULL);
	*control = (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) * 1e-9;
	return after - before;
}

/*
 * Whether the idle workers of P sleep: over one of up to three windows
 * they use under 5% of the CPU the control got (2 ms of slack).  A worker
 * that spins or wakes on a timer fails every window.  One window alone
 * failed once in CI, 29 ms while other tests ran beside, though a
 * worker's spin ends by the wall clock after 0.1 ms: most likely the
 * host took the vCPU away in that spin, and the guest, which reports no
 * steal time (/proc/stat), charged it to the thread.  *USED and
 * *CONTROL: the last window's figures.
 */
static int
workers_sleep(struct pool *p, const char *when, double *used, double *control)
{
	for (int k = 0; k < 3; k++) {
		*used = idle_cpu(p, control);
		printf("%s: idle workers used %.2f ms of CPU in 300 ms (a busy loop: %.0f ms)\n", when, *used * 1e3,
		    *control * 1e3);
		if (*used < 0.05 * *control * (pool_size(p) - 1) + 0.002)
			return 1;
	}
	return 0;
}

/* Runs jobs FIRST .. FIRST + JOBS - 1 (their task counts vary with the
 * number); every task must run exactly once. */
static int
run_jobs(struct pool *p, struct job *j, int first, int jobs, int spin)
{
	int bad = 0;
	j->spin = spin;
	for (int k = first; k < first + jobs; k++) {
		int n = 1 + (k * 37) % MAX_TASKS;
		for (int i = 0; i < n; i++)
			atomic_store(&j->runs[i], 0);
		pool_run_tasks(p, task_fn, j, n);
		for (int i = 0; i < n; i++)
			bad += atomic_load(&j->runs[i]) != 1;
	}
	return bad;
}

struct competitor {
	atomic_int *stop;
	volatile unsigned long count;
};

static void *
competitor_main(void *arg)
{
	struct competitor *c = arg;
	while (!atomic_load(c->stop))
		c->count++;
	return NULL;
}

/* An abort function that says stop at its FIRE-th call (0: never), and
 * notes whether it was ever called on another thread than the owner. */
struct stopper {
	int calls, fire;
	pthread_t owner;
	int foreign;
};

static int
stopper_fn(void *arg)
{
	struct stopper *s = arg;
	if (!pthread_equal(pthread_self(), s->owner))
		s->foreign++;
	return ++s->calls == s->fire;
}

/* Sets every run count of J's first N tasks to 0. */
static void
runs_clear(struct job *j, int n)
{
	for (int i = 0; i < n; i++)
		atomic_store(&j->runs[i], 0);
}

/* Tasks of J's first N run more than once (must be 0) into *TWICE;
 * returns how many ran. */
static int
runs_count(struct job *j, int n, int *twice)
{
	int ran = 0;
	*twice = 0;
	for (int i = 0; i < n; i++) {
		int r = atomic_load(&j->runs[i]);
		ran += r > 0;
		*twice += r > 1;
	}
	return ran;
}

/*
 * Stopping.  On one thread the count is exact: the abort function is
 * asked before each task, so when it says stop at its N-th call, N - 1
 * tasks have run.  On several, it is asked on the owner's thread only,
 * as a job starts and before each task the owner runs; no task runs
 * twice; a stopped pool runs nothing (and asks nothing) until
 * pool_stop_clear.
 */
static void
test_stop(struct job *j, int threads)
{
	struct stopper st = { 0, 0, pthread_self(), 0 };
	struct pool *p = pool_new(threads);
	int twice, ran, stops = 0;
	unsigned long before;

	CHECK(p != NULL, "pool_new(%d)", threads);
	if (!p)
		return;
	/* Tasks long enough that the owner gets its share of them. */
	j->spin = 5000;
	pool_set_abort(p, stopper_fn, &st);

	/* Never stopping: asked once per task the owner runs, and once as
	 * the job starts where the workers share it (not when the owner
	 * runs it alone, on one thread or under load). */
	runs_clear(j, MAX_TASKS);
	atomic_store(&j->by_caller, 0);
	before = pool_jobs_alone(p);
	pool_run_tasks(p, task_fn, j, MAX_TASKS);
	const int shared = pool_size(p) > 1 && pool_jobs_alone(p) == before;
	ran = runs_count(j, MAX_TASKS, &twice);
	CHECK(ran == MAX_TASKS && twice == 0, "%d threads, no stop: %d of %d tasks ran, %d twice", pool_size(p), ran,
	    MAX_TASKS, twice);
	CHECK(st.calls == atomic_load(&j->by_caller) + shared, "%d threads: asked %d times, the owner ran %d tasks%s",
	    pool_size(p), st.calls, atomic_load(&j->by_caller), shared ? " of a shared job" : " alone");
	CHECK(!pool_stopped(p), "not stopped");

	for (int fire = 1; fire <= 40; fire += 13) {
		st.calls = 0;
		st.fire = fire;
		runs_clear(j, MAX_TASKS);
		before = pool_tasks_run(p);
		pool_run_tasks(p, task_fn, j, MAX_TASKS);
		ran = runs_count(j, MAX_TASKS, &twice);
		if (pool_size(p) > 1 && st.calls < fire && !pool_stopped(p)) {
			/* The workers took all but a few tasks (the owner was
			 * descheduled): never asked often enough to stop. */
			CHECK(ran == MAX_TASKS && twice == 0, "%d threads, owner asked %d times: %d tasks ran, %d twice",
			    pool_size(p), st.calls, ran, twice);
			pool_stop_clear(p);
			continue;
		}
		stops++;
		CHECK(pool_stopped(p) && st.calls == fire, "%d threads, stop at call %d: stopped %d after %d calls",
		    pool_size(p), fire, pool_stopped(p), st.calls);
		CHECK(twice == 0 && ran == (int)(pool_tasks_run(p) - before), "%d threads: %d tasks ran (%lu counted), "
		    "%d twice", pool_size(p), ran, pool_tasks_run(p) - before, twice);
		if (pool_size(p) == 1)
			CHECK(ran == fire - 1, "one thread, stop at call %d: %d tasks ran", fire, ran);
		/* Stopped: later jobs run nothing, nobody is asked. */
		before = pool_tasks_run(p);
		pool_run_tasks(p, task_fn, j, MAX_TASKS);
		pool_run(p, ith_fn, j);
		CHECK(pool_tasks_run(p) == before && st.calls == fire && pool_poll(p) && st.calls == fire,
		    "a stopped pool ran %lu calls, asked %d times", pool_tasks_run(p) - before, st.calls - fire);
		/* Cleared: everything runs again. */
		st.fire = 0;
		pool_stop_clear(p);
		runs_clear(j, MAX_TASKS);
		pool_run_tasks(p, task_fn, j, MAX_TASKS);
		ran = runs_count(j, MAX_TASKS, &twice);
		CHECK(ran == MAX_TASKS && twice == 0 && !pool_stopped(p), "after pool_stop_clear %d of %d tasks ran",
		    ran, MAX_TASKS);
	}
	CHECK(st.foreign == 0, "the abort function was asked %d times on a worker", st.foreign);
	CHECK(atomic_load(&j->overlap) == 0, "a worker id ran two tasks at once");
	printf("%d of 4 stops on %d thread%s: the owner asked before each of its tasks, nothing run after a stop\n",
	    stops, pool_size(p), pool_size(p) > 1 ? "s" : "");
	pool_free(p);
}

/*
 * The buffers the threads' products write (line_calloc): zeroed, on a
 * 64-byte line at every size -- calloc's large blocks start 16 bytes into
 * a page -- even where freed memory full of bytes is handed out again;
 * NULL for nothing or a size that overflows.
 */
static void
test_line_calloc(void)
{
	const size_t sizes[] = { 1, 3, 100, 4096, 33333, 200000, 5u << 20 };
	int bad_align = 0, bad_zero = 0;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (int round = 0; round < 2; round++) {
			/* Round 1: the same size again after a block of it was filled and freed. */
			if (round) {
				unsigned char *junk = malloc(sizes[i] * sizeof(float));
				if (junk) {
					memset(junk, 0xAB, sizes[i] * sizeof(float));
					free(junk);
				}
			}
			float *b = line_calloc(sizes[i], sizeof(float));
			CHECK(b != NULL, "line_calloc(%zu, 4) failed", sizes[i]);
			if (!b)
				continue;
			bad_align += ((uintptr_t)b & 63) != 0;
			for (size_t k = 0; k < sizes[i]; k++)
				bad_zero += b[k] != 0.0f;
			free(b);
		}
	}
	CHECK(bad_align == 0, "%d line_calloc blocks not on a 64-byte line", bad_align);
	CHECK(bad_zero == 0, "line_calloc: %d elements not zero", bad_zero);
	CHECK(line_calloc(0, 4) == NULL && line_calloc(4, 0) == NULL, "line_calloc of nothing gave memory");
	CHECK(line_calloc(SIZE_MAX / 2, 4) == NULL, "line_calloc of an overflowing size gave memory");
	printf("line_calloc: 14 blocks of 4 B to 20 MiB on 64-byte lines, zeroed\n");
}

/*
 * Ranges (pool_range_next), first in one thread, the tasks' calls
 * interleaved by hand: an owner claims its range front to back, in
 * order; a task whose range is empty takes the back half of the largest
 * other with at least MIN_STEAL left, and nothing when none has; in the
 * end every unit was claimed exactly once.  Then on the pool's threads,
 * one task slowed by more work per unit: every unit once.
 */
enum { R_UNITS = 1000, R_MIN = 8, R_THREADED = 200000 };

static uint32_t want10(const void *ctx, uint32_t lo, uint32_t hi) { (void)ctx; (void)lo; (void)hi; return 10; }
static uint32_t want_quarter(const void *ctx, uint32_t lo, uint32_t hi) { (void)ctx; (void)lo; return (hi - lo) / 4; }

struct rjob {
	struct pool_range r[64];
	int n;
	atomic_int *seen;
	atomic_uint sink;
};

static void
range_task(void *arg, int task, int worker)
{
	struct rjob *j = arg;
	uint32_t lo, hi;
	(void)worker;
	while (pool_range_next(j->r, j->n, task, R_MIN, want_quarter, NULL, &lo, &hi))
		for (uint32_t u = lo; u < hi; u++) {
			unsigned x = u;
			for (int k = 0; k < (task == 0 ? 400 : 20); k++)   /* task 0 reads slowly */
				x = x * 1664525u + 1013904223u;
			atomic_fetch_add(&j->sink, x);
			atomic_fetch_add(&j->seen[u], 1);
		}
}

static void
test_ranges(void)
{
	struct pool_range r[3];
	int count[R_UNITS] = { 0 }, bad = 0, steals = 0;
	uint32_t lo, hi, last = 0;

	pool_range_set(&r[0], 0, 500);
	pool_range_set(&r[1], 500, 600);
	pool_range_set(&r[2], 600, R_UNITS);
	CHECK(pool_range_next(r, 3, 0, R_MIN, want10, NULL, &lo, &hi) && lo == 0 && hi == 10,
	    "task 0's first claim [%u, %u), not [0, 10)", lo, hi);
	for (uint32_t u = lo; u < hi; u++)
		count[u]++;
	/* Task 1 alone till nothing is left to it. */
	int own = 1;
	last = 500;
	while (pool_range_next(r, 3, 1, R_MIN, want10, NULL, &lo, &hi)) {
		if (own && lo != last) {
			own = 0;
			/* Range 0 has [10, 500) left, range 2 [600, 1000). */
			CHECK(last == 600 && lo == 255 && hi == 265, "task 1's first claim off its range [%u, %u) (after "
			    "%u), not [255, 265), the back half of the largest other", lo, hi, last);
		}
		if (lo != last)
			steals++;
		for (uint32_t u = lo; u < hi; u++)
			count[u]++;
		last = hi;
	}
	/* Its claims were in order until the first one off its range (checked above). */
	CHECK(!own, "task 1 claimed its own range and never stole");
	for (int i = 0; i < 3; i++)
		CHECK(i == 1 || pool_range_left(&r[i]) < R_MIN, "task 1 left %u units in range %d, not under %d",
		    pool_range_left(&r[i]), i, R_MIN);
	/* The owners finish what is left of theirs. */
	for (int t = 0; t < 3; t += 2)
		while (pool_range_next(r, 3, t, R_MIN, want10, NULL, &lo, &hi))
			for (uint32_t u = lo; u < hi; u++)
				count[u]++;
	bad = 0;
	for (int u = 0; u < R_UNITS; u++)
		bad += count[u] != 1;
	CHECK(bad == 0, "ranges by hand: %d units not claimed exactly once", bad);
	CHECK(steals >= 4, "task 1 stole %d times", steals);

	/* On the pool's threads. */
	struct rjob *j = calloc(1, sizeof(*j));
	struct pool *p = pool_new(pool_cpus_available() < 2 ? 2 : pool_cpus_available());
	CHECK(j && p, "memory");
	if (!j || !p) {
		free(j);
		pool_free(p);
		return;
	}
	j->seen = calloc(R_THREADED, sizeof(*j->seen));
	j->n = pool_size(p) < 64 ? pool_size(p) : 64;
	bad = 0;
	for (int round = 0; round < 20 && j->seen; round++) {
		for (int k = 0; k < j->n; k++)
			pool_range_set(&j->r[k], (uint32_t)((uint64_t)R_THREADED * k / j->n),
			    (uint32_t)((uint64_t)R_THREADED * (k + 1) / j->n));
		pool_run_tasks(p, range_task, j, j->n);
		for (int u = 0; u < R_THREADED; u++)
			bad += atomic_exchange(&j->seen[u], 0) != 1;
	}
	CHECK(j->seen && bad == 0, "ranges on %d threads: %d units not done exactly once", pool_size(p), bad);
	printf("ranges: by hand, every unit once, the thief took back halves %d times; on %d threads 20 jobs of %d "
	    "units, each once\n", steals, pool_size(p), R_THREADED);
	free(j->seen);
	free(j);
	pool_free(p);
}

/*
 * Reading ahead.  Where the caller runs a task that names bytes for
 * itself to read ahead and a worker's task waits for them, the caller
 * reads them while it waits for the job's end: the count grows by
 * exactly their number.  Where a worker's task names them, that worker
 * reads them once the job is over, while it waits for the next.  (The
 * count is a prefetch's: that the bytes were asked for.)  Then the trace
 * of GEMV jobs that names what to read: after a token's jobs the next
 * token's job i gets job i + 1's weights, the last the first's; and a
 * task's share of them, split as the job splits its rows.
 */
enum { AHEAD_BYTES = 48 << 10 };

struct ajob {
	struct pool *p;
	const uint8_t *buf;
	int reader;                 /* 0: the caller names bytes; 1: a worker */
	atomic_int named, waited, reached;
	unsigned long base;
};

/* Waits (10 s at most) for WANT bytes read ahead since the round began. */
static int
ahead_wait(const struct ajob *j, unsigned long want)
{
	const double t0 = now_s();
	while (pool_ahead_bytes(j->p) - j->base < want)
		if (now_s() - t0 > 10)
			return 0;
	return 1;
}

/* Waits (a second at most) for the other thread's task to start. */
static void
other_wait(atomic_int *flag)
{
	const double t0 = now_s();
	while (!atomic_load(flag) && now_s() - t0 < 1)
		;
}

static void
ahead_task(void *arg, int task, int worker)
{
	struct ajob *j = arg;
	/* Two extents: the count is their sum. */
	const void *ptr[2] = { j->buf, j->buf + (128 << 10) };
	const size_t len[2] = { AHEAD_BYTES / 3, AHEAD_BYTES - AHEAD_BYTES / 3 };
	(void)task;
	if ((worker == 0) == (j->reader == 0)) {
		pool_read_ahead(j->p, worker, ptr, len, 2);
		atomic_store(&j->named, 1);
		if (worker == 0)   /* leave the other task to the worker */
			other_wait(&j->waited);
	} else if (j->reader == 0) {
		atomic_store(&j->waited, 1);
		atomic_store(&j->reached, ahead_wait(j, AHEAD_BYTES));
	} else {
		other_wait(&j->named);
	}
}

static void
test_read_ahead(void)
{
	struct pool *p = pool_new(2);
	uint8_t *buf = malloc(256 << 10);
	const char *who[2] = { "the caller, waiting for the job's end", "a worker, waiting for the next job" };

	CHECK(p && buf, "memory");
	if (p && buf && pool_size(p) > 1) {
		memset(buf, 7, 256 << 10);
		pool_set_contended(p, 0, 0);
		for (int reader = 0; reader < 2; reader++) {
			struct ajob j = { .p = p, .buf = buf, .reader = reader };
			int round = 0, done = 0;
			/* Until the tasks ran on both threads (the caller may take both). */
			for (; round < 200 && !done; round++) {
				atomic_store(&j.named, 0);
				atomic_store(&j.waited, 0);
				atomic_store(&j.reached, 0);
				pool_read_ahead(p, 0, NULL, NULL, 0);   /* the caller's, from a round before */
				j.base = pool_ahead_bytes(p);
				pool_run_tasks(p, ahead_task, &j, 2);
				if (!atomic_load(&j.named))
					continue;
				if (reader == 0) {
					if (!atomic_load(&j.waited))
						continue;
					CHECK(atomic_load(&j.reached), "%s: read ahead %lu of %d bytes", who[reader],
					    pool_ahead_bytes(p) - j.base, AHEAD_BYTES);
				} else {
					CHECK(ahead_wait(&j, AHEAD_BYTES), "%s: read ahead %lu of %d bytes", who[reader],
					    pool_ahead_bytes(p) - j.base, AHEAD_BYTES);
				}
				done = 1;
			}
			CHECK(done, "%s: in %d jobs never one task on each thread", who[reader], round);
			/* Each byte once: nothing more comes. */
			pool_run_tasks(p, task_fn, &(struct job){ .spin = 10 }, 1);
			CHECK(pool_ahead_bytes(p) - j.base == AHEAD_BYTES, "%s: %lu bytes read ahead, not %d", who[reader],
			    pool_ahead_bytes(p) - j.base, AHEAD_BYTES);
			printf("read ahead by %s: %d bytes in two extents, each once (job %d)\n", who[reader], AHEAD_BYTES,
			    round);
		}
	} else if (p && buf) {
		printf("one CPU: no thread waits, nothing read ahead; the trace alone\n");
	}
	free(buf);
	pool_free(p);

	/* The trace: 3 jobs, then 4 (a job more at the end), then 4 again. */
	static const uint8_t w[5][64];
	struct mm_scratch s;
	struct mm_reads r[4];
	CHECK(mm_scratch_init(&s, 1, 64, 1) == 0, "mm_scratch_init");
	for (int i = 0; i < 4; i++)
		r[i] = (struct mm_reads){ { w[i], w[4] }, { 64, 32 }, i == 1 ? 2 : 1 };
	int bad = 0;
	for (int i = 0; i < 3; i++)
		bad += mm_trace_step(&s, &r[i]) != NULL;
	CHECK(bad == 0, "the first token's jobs were given %d jobs to read ahead", bad);
	for (int tok = 0; tok < 3; tok++) {
		const int n = tok == 0 ? 3 : 4;
		for (int i = 0; i < n; i++) {
			const struct mm_reads *nx = mm_trace_step(&s, &r[i]);
			/* Token 1 (3 jobs traced): job 3 is new, after the last. */
			const int want = tok == 1 && i == 3 ? -1 : i + 1 == (tok == 1 ? 3 : n) ? 0 : i + 1;
			const int got = !nx ? -1 : nx->p[0] == w[0] ? 0 : nx->p[0] == w[1] ? 1 : nx->p[0] == w[2] ? 2 :
			    nx->p[0] == w[3] ? 3 : -2;
			CHECK(got == want && (got != 1 || (nx->n == 2 && nx->p[1] == w[4] && nx->len[1] == 32)),
			    "token %d, job %d: told to read ahead job %d's weights, not %d's", tok + 1, i, got, want);
		}
	}
	/* Shares: 96 bytes over two extents in two tasks, then at most 40 a task. */
	const void *ptr[MM_MAX_PARTS];
	size_t len[MM_MAX_PARTS];
	CHECK(mm_reads_share(&r[1], 0, 2, 1000, ptr, len) == 1 && ptr[0] == w[1] && len[0] == 48,
	    "task 0 of 2: not the first 48 bytes of the first matrix");
	CHECK(mm_reads_share(&r[1], 1, 2, 1000, ptr, len) == 2 && ptr[0] == w[1] + 48 && len[0] == 16 &&
	    ptr[1] == w[4] && len[1] == 32, "task 1 of 2: not the last 16 bytes of the first and the second whole");
	CHECK(mm_reads_share(&r[1], 1, 2, 40, ptr, len) == 2 && len[0] == 16 && len[1] == 24,
	    "task 1 of 2, 40 bytes at most: not 16 + 24");
	CHECK(mm_reads_share(&r[1], 1, 1000, 40, ptr, len) == 0, "a share of no bytes named some");
	mm_scratch_free(&s);
	printf("trace: each job told the next one's weights (the last the first's); shares split as the rows\n");
}

int
main(void)
{
	int cpus = pool_cpus_available();
	int n = cpus < 2 ? 2 : cpus;
	struct job *j = calloc(1, sizeof(*j));
	struct pool *p;

	printf("%d CPUs available\n", cpus);
	test_line_calloc();
	CHECK(j != NULL, "memory");
	if (!j)
		return test_done("test-pool");

	/* More threads than CPUs are clamped. */
	p = pool_new(cpus + 3);
	CHECK(p && pool_size(p) == cpus, "pool_new(%d) has %d threads, not %d", cpus + 3, p ? pool_size(p) : 0, cpus);
	pool_free(p);
	pool_free(NULL);

	p = pool_new(n);
	CHECK(p != NULL, "pool_new");
	if (!p)
		return test_done("test-pool");
	n = pool_size(p);

	/* Every task exactly once, no worker id in two calls at once. */
	int bad = run_jobs(p, j, 0, 2000, 200);
	CHECK(bad == 0, "%d tasks did not run exactly once", bad);
	CHECK(atomic_load(&j->overlap) == 0, "a worker id ran two tasks at once (%d)", atomic_load(&j->overlap));
	printf("2000 jobs of 1..%d tasks on %d threads: every task once; the caller ran %d of them\n", MAX_TASKS, n,
	    atomic_load(&j->by_caller));

	/* pool_run: each ith once, nth the pool size. */
	bad = 0;
	for (int k = 0; k < 500; k++) {
		for (int i = 0; i < n; i++)
			atomic_store(&j->runs[i], 0);
		pool_run(p, ith_fn, j);
		for (int i = 0; i < n; i++)
			bad += atomic_load(&j->runs[i]) != 1;
	}
	CHECK(bad == 0, "pool_run: %d calls missing or repeated", bad);

	/* Idle workers sleep: over 0.3 s without jobs they use a small fraction
	 * of the CPU a busy-looping thread gets in the same time. */
	if (n > 1) {
		double control, used;
		CHECK(workers_sleep(p, "after the jobs", &used, &control),
		    "idle workers used %.1f ms of CPU, a busy loop %.1f ms (three windows)", used * 1e3, control * 1e3);
	}

	/* Beside threads that keep every CPU busy, jobs still finish (a worker
	 * the OS does not schedule gets no task), every task once; afterwards
	 * the workers go back to sleep. */
	{
		atomic_int stop = 0;
		struct competitor comp[64];
		pthread_t th[64];
		int nc = cpus > 64 ? 64 : cpus, started = 0;
		double t0 = now_s();
		for (int i = 0; i < nc; i++) {
			comp[i].stop = &stop;
			comp[i].count = 0;
			if (pthread_create(&th[i], NULL, competitor_main, &comp[i]) == 0)
				started++;
		}
		int jobs = 0;
		bad = 0;
		/* As many jobs as fit in about a second; at least 20. */
		while (jobs < 20 || (now_s() - t0 < 1.0 && jobs < 2000)) {
			bad += run_jobs(p, j, jobs, 1, 2000);
			jobs++;
		}
		atomic_store(&stop, 1);
		for (int i = 0; i < started; i++)
			pthread_join(th[i], NULL);
		printf("beside %d busy threads: %d jobs finished in %.2f s\n", started, jobs, now_s() - t0);
		CHECK(bad == 0 && atomic_load(&j->overlap) == 0, "beside busy threads: %d tasks wrong", bad);
		if (n > 1) {
			double control, used;
			CHECK(workers_sleep(p, "after the busy phase", &used, &control),
			    "after the busy phase idle workers used %.1f ms of CPU, a busy loop %.1f ms (three windows)",
			    used * 1e3, control * 1e3);
		}
	}

	/* Jobs of one task and jobs with more tasks than allowed run on the caller. */
	atomic_store(&j->by_caller, 0);
	for (int i = 0; i < 1; i++)
		atomic_store(&j->runs[i], 0);
	pool_run_tasks(p, task_fn, j, 1);
	CHECK(atomic_load(&j->runs[0]) == 1 && atomic_load(&j->by_caller) == 1, "a job of one task runs on the caller");

	/* A machine with no CPU to spare.  With autogroups (the CPU shared by
	 * session): every task on the caller, the workers asleep.  Without:
	 * the workers still take tasks (beside busy threads above, jobs
	 * finish either way). */
	if (n > 1) {
		/* Uncontended, no job ran alone; contended, every job of several
		 * tasks did (pool_jobs_alone, what natter bench reports). */
		pool_set_contended(p, 0, 1);
		const unsigned long alone0 = pool_jobs_alone(p);
		CHECK(run_jobs(p, j, 0, 20, 64) == 0 && pool_jobs_alone(p) == alone0,
		    "uncontended: %lu jobs ran alone", pool_jobs_alone(p) - alone0);
		pool_set_contended(p, 1, 1);
		atomic_store(&j->by_caller, 0);
		double cpu0 = 0;
		for (int i = 1; i < n; i++)
			cpu0 += pool_worker_cpu_seconds(p, i);
		bad = run_jobs(p, j, 0, 300, 64);
		double cpu1 = 0;
		for (int i = 1; i < n; i++)
			cpu1 += pool_worker_cpu_seconds(p, i);
		unsigned long all = 0;
		for (int k = 0; k < 300; k++)
			all += 1 + (k * 37) % MAX_TASKS;
		CHECK(bad == 0, "contended: %d tasks wrong", bad);
		unsigned long several = 0;
		for (int k = 0; k < 300; k++)
			several += (k * 37) % MAX_TASKS > 0;
		CHECK(pool_jobs_alone(p) - alone0 == several, "contended: %lu jobs counted alone, %lu of several tasks ran",
		    pool_jobs_alone(p) - alone0, several);
		CHECK((unsigned long)atomic_load(&j->by_caller) == all, "contended with autogroups: %d of %lu tasks on the caller",
		    atomic_load(&j->by_caller), all);
		printf("contended, autogroups: %lu tasks all on the caller; the workers used %.2f ms of CPU meanwhile\n", all,
		    (cpu1 - cpu0) * 1e3);
		int now;
		pool_contended(p, &now);
		CHECK(now == 1, "pool_contended: not contended after pool_set_contended");
		pool_set_contended(p, 0, 1);
	}

	pool_free(p);
	test_stop(j, 1);
	test_stop(j, n);
	free(j);
	test_ranges();
	test_read_ahead();
	return test_done("test-pool");
}
