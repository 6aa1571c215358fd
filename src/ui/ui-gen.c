/* ui-gen.c -- generation on its own thread; the UI hears of it through a queue and a wake-up fd. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "natter/chat.h"
#include "ui/ui.h"

/*
 * The queue: everything the generation thread reports is written under MU
 * and read under MU by the UI thread (ui_gen_take); nothing else is shared
 * but the session's own atomics (chat_cancel, live parameters).  The wake-up
 * byte only says "look at the queue".
 */
struct ui_gen {
	struct chat *c;          /* the generation thread's until it ends */
	int regen, wake_fd;
	pthread_t th;
	pthread_mutex_t mu;
	/* Guarded by mu: */
	struct ui_buf answer, reasoning;   /* produced, not yet taken */
	struct ui_gen_status st;
	char notice[256];
	int rc;
	struct chat_stats cst;
	char err[512];
};

static void
wake(struct ui_gen *g)
{
	char b = 1;
	/* The pipe is non-blocking: a full pipe already means "wake up". */
	while (write(g->wake_fd, &b, 1) < 0 && errno == EINTR)
		;
}

/* Appends S[0..N) to B; -1 if out of memory (B unchanged). */
static int
buf_add(struct ui_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap)))
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

/* Generation thread: each piece of the reply, the reasoning apart. */
static int
on_piece(void *ctx, const struct chat_piece *p)
{
	struct ui_gen *g = ctx;
	int used = chat_ctx_used(g->c);   /* this thread owns the session now */

	pthread_mutex_lock(&g->mu);
	/* Out of memory, the piece is lost here; the reply as stored, shown
	 * when it ends, has it. */
	buf_add(p->kind == CHAT_PIECE_REASONING ? &g->reasoning : &g->answer, p->text, p->len);
	g->st.pieces++;
	g->st.n_gen = p->n_gen;
	g->st.n_reasoning = p->n_reasoning;
	g->st.ctx_used = used;
	pthread_mutex_unlock(&g->mu);
	wake(g);
	return 0;
}

/* Generation thread. */
static void
on_notice(void *ctx, const char *msg)
{
	struct ui_gen *g = ctx;
	pthread_mutex_lock(&g->mu);
	snprintf(g->notice, sizeof(g->notice), "%s", msg);
	pthread_mutex_unlock(&g->mu);
	wake(g);
}

/* Generation thread: between chunks of the prompt. */
static void
on_progress(void *ctx, int done, int total)
{
	struct ui_gen *g = ctx;
	double t = ui_screen_now();
	int used = chat_ctx_used(g->c);

	pthread_mutex_lock(&g->mu);
	if (g->st.prompt_total == 0 || done == 0)
		g->st.prompt_t0 = t;
	g->st.prompt_done = done;
	g->st.prompt_total = total;
	g->st.prompt_t = t;
	g->st.ctx_used = used;
	pthread_mutex_unlock(&g->mu);
	wake(g);
}

static void *
run(void *arg)
{
	struct ui_gen *g = arg;
	struct chat_stats st;
	char err[512] = "";
	int rc, used;

	chat_set_notice(g->c, on_notice, g);
	chat_set_progress(g->c, on_progress, g);
	chat_set_split(g->c, on_piece, g);
	rc = g->regen ? chat_regenerate(g->c, NULL, NULL, &st, err, sizeof(err)) :
	    chat_generate(g->c, NULL, NULL, &st, err, sizeof(err));
	chat_set_split(g->c, NULL, NULL);
	chat_set_progress(g->c, NULL, NULL);
	chat_set_notice(g->c, NULL, NULL);
	used = chat_ctx_used(g->c);
	pthread_mutex_lock(&g->mu);
	g->rc = rc;
	g->cst = st;
	memcpy(g->err, err, sizeof(err));
	g->st.ctx_used = used;
	g->st.done = 1;
	pthread_mutex_unlock(&g->mu);
	wake(g);
	return NULL;
}

struct ui_gen *
ui_gen_start(struct chat *c, int regen, int wake_fd)
{
	struct ui_gen *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->c = c;
	g->regen = regen;
	g->wake_fd = wake_fd;
	g->st.ctx_used = chat_ctx_used(c);   /* still the UI thread's here */
	pthread_mutex_init(&g->mu, NULL);
	if (pthread_create(&g->th, NULL, run, g) != 0) {
		pthread_mutex_destroy(&g->mu);
		free(g);
		return NULL;
	}
	return g;
}

int
ui_gen_take(struct ui_gen *g, struct ui_buf *answer, struct ui_buf *reasoning, struct ui_gen_status *st,
	    char *notice, size_t nlen)
{
	int rc = 0;

	if (notice && nlen)
		notice[0] = 0;
	pthread_mutex_lock(&g->mu);
	if (g->answer.len) {
		if (buf_add(answer, g->answer.p, g->answer.len) == 0)
			g->answer.len = 0;
		else
			rc = -1;
	}
	if (g->reasoning.len) {
		if (buf_add(reasoning, g->reasoning.p, g->reasoning.len) == 0)
			g->reasoning.len = 0;
		else
			rc = -1;
	}
	*st = g->st;
	if (g->notice[0] && notice) {
		snprintf(notice, nlen, "%s", g->notice);
		g->notice[0] = 0;
	}
	pthread_mutex_unlock(&g->mu);
	return rc;
}

int
ui_gen_finish(struct ui_gen *g, struct chat_stats *st, char *err, size_t errlen)
{
	int rc;
	pthread_join(g->th, NULL);
	/* Joined: nothing else touches G now. */
	rc = g->rc;
	*st = g->cst;
	snprintf(err, errlen, "%s", g->err);
	pthread_mutex_destroy(&g->mu);
	free(g->answer.p);
	free(g->reasoning.p);
	free(g);
	return rc;
}
