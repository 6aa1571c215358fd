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

struct ui_gen {
	struct chat *c;
	int regen, wake_fd;
	pthread_t th;
	pthread_mutex_t mu;
	char *buf;           /* produced, not yet taken */
	size_t len, cap;
	int pieces;
	char notice[256];
	int done, rc;
	struct chat_stats st;
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

static int
on_piece(void *ctx, const char *p, size_t n)
{
	struct ui_gen *g = ctx;
	pthread_mutex_lock(&g->mu);
	if (g->len + n + 1 > g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 4096;
		while (cap < g->len + n + 1)
			cap *= 2;
		char *b = realloc(g->buf, cap);
		if (b) {
			g->buf = b;
			g->cap = cap;
		}
	}
	if (g->len + n + 1 <= g->cap) {
		memcpy(g->buf + g->len, p, n);
		g->len += n;
	}
	g->pieces++;
	pthread_mutex_unlock(&g->mu);
	wake(g);
	return 0;
}

static void
on_notice(void *ctx, const char *msg)
{
	struct ui_gen *g = ctx;
	pthread_mutex_lock(&g->mu);
	snprintf(g->notice, sizeof(g->notice), "%s", msg);
	pthread_mutex_unlock(&g->mu);
	wake(g);
}

static void *
run(void *arg)
{
	struct ui_gen *g = arg;
	struct chat_stats st;
	char err[512] = "";
	int rc;

	chat_set_notice(g->c, on_notice, g);
	rc = g->regen ? chat_regenerate(g->c, on_piece, g, &st, err, sizeof(err)) :
	    chat_generate(g->c, on_piece, g, &st, err, sizeof(err));
	chat_set_notice(g->c, NULL, NULL);
	pthread_mutex_lock(&g->mu);
	g->rc = rc;
	g->st = st;
	memcpy(g->err, err, sizeof(err));
	g->done = 1;
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
	pthread_mutex_init(&g->mu, NULL);
	if (pthread_create(&g->th, NULL, run, g) != 0) {
		pthread_mutex_destroy(&g->mu);
		free(g);
		return NULL;
	}
	return g;
}

int
ui_gen_take(struct ui_gen *g, char **buf, size_t *len, size_t *cap, int *n_pieces, char *notice, size_t nlen)
{
	int done;
	pthread_mutex_lock(&g->mu);
	if (g->len) {
		if (*len + g->len + 1 > *cap) {
			size_t c = *cap ? *cap * 2 : 4096;
			while (c < *len + g->len + 1)
				c *= 2;
			char *b = realloc(*buf, c);
			if (b) {
				*buf = b;
				*cap = c;
			}
		}
		if (*len + g->len + 1 <= *cap) {
			memcpy(*buf + *len, g->buf, g->len);
			*len += g->len;
			(*buf)[*len] = 0;
			g->len = 0;
		}
	}
	*n_pieces = g->pieces;
	if (g->notice[0] && notice) {
		snprintf(notice, nlen, "%s", g->notice);
		g->notice[0] = 0;
	}
	done = g->done;
	pthread_mutex_unlock(&g->mu);
	return done;
}

int
ui_gen_finish(struct ui_gen *g, struct chat_stats *st, char *err, size_t errlen)
{
	int rc;
	pthread_join(g->th, NULL);
	rc = g->rc;
	*st = g->st;
	snprintf(err, errlen, "%s", g->err);
	pthread_mutex_destroy(&g->mu);
	free(g->buf);
	free(g);
	return rc;
}
