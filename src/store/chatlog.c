/* chatlog.c -- a chat session's messages and generations, written to the store as they happen. */
#include "config.h"

#include <string.h>

#include "natter/chat.h"
#include "natter/chatlog.h"
#include "natter/store.h"

int
chatlog_user(struct chatlog *l, struct chat *c)
{
	int64_t id;
	int n = chat_n_messages(c);

	if (!l->s || n == 0)
		return 0;
	if (!l->conv && store_conv_new(l->s, l->model_id, NULL, l->template_name, chat_system(c), &l->conv) < 0)
		return -1;
	if (store_msg_add(l->s, l->conv, "user", chat_message_content(c, n - 1), &id) < 0)
		return -1;
	l->last_msg = 0;   /* the reply will be a new assistant message */
	return 0;
}

int
chatlog_reply(struct chatlog *l, struct chat *c, const struct chat_stats *st, int regen)
{
	struct store_gen g;
	struct sampler_params sp;
	int64_t msg;

	if (!l->s || !l->conv)
		return 0;
	chat_get_params(c, &sp);
	memset(&g, 0, sizeof(g));
	g.content = chat_message_content(c, chat_n_messages(c) - 1);
	g.state = st->stop == CHAT_STOP_CANCEL ? "cancelled" : "complete";
	g.stop_reason = chat_stop_name(st->stop);
	g.temp = sp.temp;
	g.top_k = sp.top_k;
	g.top_p = sp.top_p;
	g.min_p = sp.min_p;
	g.repeat_penalty = sp.repeat_penalty;
	g.presence_penalty = sp.presence_penalty;
	g.frequency_penalty = sp.frequency_penalty;
	g.penalty_last_n = sp.penalty_last_n;
	g.seed = st->seed;
	g.max_tokens = chat_max_tokens(c);
	g.n_prompt = st->n_prompt;
	g.n_reused = st->n_reused;
	g.n_gen = st->n_gen;
	g.n_ctx_used = st->n_ctx_used;
	g.n_ctx = st->n_ctx;
	g.prompt_tps = st->prompt_tps;
	g.gen_tps = st->gen_tps;
	g.ttft_ms = st->ttft_ms;
	if (store_gen_add(l->s, l->conv, regen ? l->last_msg : 0, &g, &l->last_gen, &msg) < 0)
		return -1;
	l->last_msg = msg;
	return 0;
}

int
chatlog_system(struct chatlog *l, struct chat *c)
{
	if (!l->s || !l->conv)
		return 0;
	return store_conv_set_system(l->s, l->conv, chat_system(c));
}

void
chatlog_new(struct chatlog *l)
{
	l->conv = l->last_msg = l->last_gen = 0;
}
