/* cmd-ui.c -- `natter [-m MODEL | --remote URL [-m NAME]] [OPTIONS]`: options for the full-screen interface. */
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
		{ "token-delay", required_argument, NULL, 'd' },
		CLI_CHAT_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ui_opts o;
	struct cli_chat_args args = { 0 };
	int c;

	memset(&o, 0, sizeof(o));
	if (cli_chat_args_init(&args) < 0)   /* the defaults and the config file */
		return 2;
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:" CLI_CHAT_SHORTOPTS, opts, NULL)) != -1) {
		int r = cli_chat_option(c, optarg, &args, NULL);
		if (r < 0)
			return 2;
		if (r)
			continue;
		switch (c) {
		case 'm': o.model_path = optarg; break;
		case 'T': o.theme = optarg; break;
		case 'd':
			if (cli_arg_int(optarg, 0, 60000, &o.token_delay_ms,
			    "--token-delay wants a number of milliseconds (0 to 60000)") < 0)
				return 2;
			break;
		default:
			return 2;
		}
	}
	if (optind < argc) {
		cli_error("unexpected argument '%s' (see natter --help)", argv[optind]);
		return 2;
	}
	if (cli_remote_wanted(&args, o.model_path)) {
		/* -m names the server's model; the session is made here, before
		 * the screen and its threads. */
		if (cli_remote_session(&args, o.model_path, &o.session) < 0)
			return 1;
		o.model_path = NULL;
	} else if (!o.model_path) {
		o.model_path = args.model;   /* the config file's model */
	}
	if (!o.theme)
		o.theme = args.theme;
	args.chat.n_threads = cli_threads("chat", args.chat.n_threads);
	o.chat = args.chat;
	o.db = args.db;
	o.no_history = args.no_history;
	return ui_run(&o);
}
