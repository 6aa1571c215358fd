/* cli-opts.c -- the options both chat front ends take (chat --plain and the full screen). */
#include "config.h"

#include <stdlib.h>

#include "cli/cli.h"
#include "natter/chat.h"

int
cli_chat_option(int c, const char *arg, struct cli_chat_args *a)
{
	struct chat_opts *o = &a->chat;

	switch (c) {
	case 'c': o->n_ctx = atoi(arg); break;
	case 't': o->n_threads = atoi(arg); break;
	case 's': o->sp.seed = strtoull(arg, NULL, 10); break;
	case 'n': o->max_tokens = atoi(arg); break;
	case CLI_OPT_SYSTEM: o->system_prompt = arg; break;
	case CLI_OPT_TEMPLATE: o->template_spec = arg; break;
	case CLI_OPT_TEMP: o->sp.temp = strtof(arg, NULL); break;
	case CLI_OPT_TOP_K: o->sp.top_k = atoi(arg); break;
	case CLI_OPT_TOP_P: o->sp.top_p = strtof(arg, NULL); break;
	case CLI_OPT_MIN_P: o->sp.min_p = strtof(arg, NULL); break;
	case CLI_OPT_REPEAT: o->sp.repeat_penalty = strtof(arg, NULL); break;
	case CLI_OPT_DB: a->db = arg; break;
	case CLI_OPT_NO_HISTORY: a->no_history = 1; break;
	case CLI_OPT_STOP:
		if (a->n_stop < 8)
			o->stop[a->n_stop++] = arg;
		break;
	default:
		return 0;
	}
	return 1;
}
