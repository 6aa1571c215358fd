/* pool.h -- a persistent thread pool for the kernels: tasks claimed by whichever thread is running. */
#ifndef NATTER_POOL_H
#define NATTER_POOL_H

#include <stddef.h>
#include <stdint.h>

struct pool;

/* FN(CTX, ITH, NTH) is called once for each ITH in [0, NTH), NTH the pool
 * size.  Calls may run on any thread, several on the same one in turn
 * (a worker the OS has not scheduled gets none): use ITH for per-call
 * scratch, never as a thread identity. */
typedef void (*pool_fn)(void *ctx, int ith, int nth);
/* FN(CTX, TASK, WORKER) for each TASK in [0, n_tasks); WORKER in
 * [0, pool_size) names the thread running it (0 is the caller), for
 * per-thread scratch: no two calls with the same WORKER overlap. */
typedef void (*pool_task_fn)(void *ctx, int task, int worker);

/* The most tasks one pool_run_tasks call takes (larger counts run on the
 * calling thread alone). */
#define POOL_MAX_TASKS ((1 << 20) - 1)

/* Starts N_THREADS - 1 workers (the caller is the N-th); N_THREADS is
 * first clamped to 1 .. the CPUs this process may run on.  NULL when no
 * memory.  Threads that cannot be started are done without. */
struct pool *pool_new(int n_threads);
/* Stops and joins the workers.  pool_free(NULL) does nothing. */
void pool_free(struct pool *p);
int pool_size(const struct pool *p);
/* Runs every call and returns when all have finished.  Only one thread
 * may run jobs on a given pool at a time (the owner of the context). */
void pool_run(struct pool *p, pool_fn fn, void *ctx);
void pool_run_tasks(struct pool *p, pool_task_fn fn, void *ctx, int n_tasks);
/*
 * Work in ranges of units, one range per task of a job: a task takes
 * units from the front of its own range, in order (a thread reads one
 * stream of memory, not many), and once its range is empty takes the
 * back half of the largest other range with at least MIN_STEAL units
 * left (a thread that is slower, or not running, leaves its work to the
 * others), then goes on with that as its own.  Each range is one word
 * (lo | hi << 32) changed by compare-and-swap.
 */
struct pool_range {
	_Alignas(64) _Atomic uint64_t w;
};
typedef uint32_t (*pool_want_fn)(const void *ctx, uint32_t lo, uint32_t hi);
/* Sets R to [LO, HI) (the owner, before the job). */
void pool_range_set(struct pool_range *r, uint32_t lo, uint32_t hi);
/* The units R has left unclaimed (any thread). */
uint32_t pool_range_left(struct pool_range *r);
/* Claims for task SELF of the N ranges R the units [*LO, *HI): from its
 * own range's front, WANT(CTX, lo, hi) of its [lo, hi) left (clamped to
 * 1 .. hi - lo), else from another's back as above.  0 when none is left
 * to it. */
int pool_range_next(struct pool_range *r, int n, int self, uint32_t min_steal, pool_want_fn want, const void *ctx,
		    uint32_t *lo, uint32_t *hi);
/*
 * Reading ahead while idle.  A task may name, for the thread running it
 * (WORKER), the bytes that thread will read first in the next job (up to
 * POOL_AHEAD_EXTENTS extents, PTR[i] for LEN[i] bytes; N 0 forgets what
 * was named).  While that thread then waits -- for the next job, or for
 * the others to finish this one -- it asks for them (a prefetch, a few
 * lines between two looks at what it waits for), each byte once: a
 * thread that finished its share of a matrix fetches the start of its
 * share of the next one while the other still reads, or the caller
 * works alone between the two.  Not while the machine is contended (the
 * threads do not spin then).
 */
#define POOL_AHEAD_EXTENTS 4
void pool_read_ahead(struct pool *p, int worker, const void *const *ptr, const size_t *len, int n);
/* Bytes asked for so far by reading ahead (tests; any thread, after the
 * jobs). */
unsigned long pool_ahead_bytes(const struct pool *p);
/*
 * Stopping a job part-way (Esc while a long prompt is read).  FN(CTX) is
 * asked on the thread that runs jobs on P, as a job it shares with the
 * workers starts, before each task that thread runs and whenever it
 * calls pool_poll; once it answers nonzero the pool
 * is stopped: no task starts any more (tasks already running finish; the
 * rest of the job and every later job are skipped, their calls never
 * made) until pool_stop_clear.  A stopped job's outputs are therefore
 * partly unwritten: the owner must check pool_stopped after its jobs and
 * throw their results away.  FN NULL: never stopped.  Set between jobs,
 * by the owner.
 */
typedef int (*pool_abort_fn)(void *ctx);
void pool_set_abort(struct pool *p, pool_abort_fn fn, void *ctx);
/* Whether P is stopped; on any thread other than P's workers (the owner,
 * between or inside its jobs) the abort function is asked first.  A long
 * task calls it now and then to end early (the skip is its own doing: it
 * simply returns). */
int pool_poll(struct pool *p);
/* Whether P is stopped, without asking (any thread). */
int pool_stopped(const struct pool *p);
/* Lets P run tasks again.  The owner, between jobs. */
void pool_stop_clear(struct pool *p);
/* Calls made since P was created, skipped ones not counted (tests). */
unsigned long pool_tasks_run(const struct pool *p);
/* Jobs run on P so far (pool_run and pool_run_tasks calls); the owner (tests). */
unsigned long pool_jobs(const struct pool *p);
/* How many of the caller's periodic checks found the machine with no CPU
 * to spare (pool.c: then no thread of P spins while it waits); *NOW (if
 * not NULL) whether the last one did.  The owner (tests). */
unsigned long pool_contended(const struct pool *p, int *now);
/* Jobs of several tasks the caller ran alone because the machine had no
 * CPU to spare and the kernel shares the CPU by session (pool.c); the
 * owner. */
unsigned long pool_jobs_alone(const struct pool *p);
/* Tests: takes CONTENDED and AUTOGROUP (whether the kernel shares the CPU
 * by session) as given from now on, instead of reading the machine. */
void pool_set_contended(struct pool *p, int contended, int autogroup);
/* CPU time worker I (1 .. size - 1) has used, in seconds, or -1 (tests). */
double pool_worker_cpu_seconds(const struct pool *p, int i);
/* The CPUs this process may run on (at least 1). */
int pool_cpus_available(void);

#endif
