/* cmd-ui.c -- `natter [-m MODEL] [OPTIONS]`: options for the full-screen interface. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/ui.h"

int
cmd_ui(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "theme", required_argument, NULL, 'T' },
		{ "db", required_argument, NULL, 'D' },
		{ "no-history", no_argument, NULL, 'N' },
		{ "system", required_argument, NULL, 'y' },
		{ "chat-template", required_argument, NULL, 'C' },
		{ "ctx-size", required_argument, NULL, 'c' },
		{ "threads", required_argument, NULL, 't' },
		{ "temp", required_argument, NULL, 'e' },
		{ "top-k", required_argument, NULL, 'K' },
		{ "top-p", required_argument, NULL, 'p' },
		{ "min-p", required_argument, NULL, 'M' },
		{ "repeat-penalty", required_argument, NULL, 'R' },
		{ "seed", required_argument, NULL, 's' },
		{ "max-tokens", required_argument, NULL, 'n' },
		{ "token-delay", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	struct ui_opts o;
	int c;

	memset(&o, 0, sizeof(o));
	chat_opts_default(&o.chat);
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:c:t:n:s:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': o.model_path = optarg; break;
		case 'T': o.theme = optarg; break;
		case 'D': o.db = optarg; break;
		case 'N': o.no_history = 1; break;
		case 'y': o.chat.system_prompt = optarg; break;
		case 'C': o.chat.template_spec = optarg; break;
		case 'c': o.chat.n_ctx = atoi(optarg); break;
		case 't': o.chat.n_threads = atoi(optarg); break;
		case 'e': o.chat.sp.temp = strtof(optarg, NULL); break;
		case 'K': o.chat.sp.top_k = atoi(optarg); break;
		case 'p': o.chat.sp.top_p = strtof(optarg, NULL); break;
		case 'M': o.chat.sp.min_p = strtof(optarg, NULL); break;
		case 'R': o.chat.sp.repeat_penalty = strtof(optarg, NULL); break;
		case 's': o.chat.sp.seed = strtoull(optarg, NULL, 10); break;
		case 'n': o.chat.max_tokens = atoi(optarg); break;
		case 'd': o.token_delay_ms = atoi(optarg); break;
		default:
			return 2;
		}
	}
	if (optind < argc) {
		cli_error("unexpected argument '%s' (see natter --help)", argv[optind]);
		return 2;
	}
	return ui_run(&o);
}
