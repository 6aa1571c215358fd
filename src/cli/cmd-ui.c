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
		{ "token-delay", required_argument, NULL, 'd' },
		CLI_CHAT_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ui_opts o;
	struct cli_chat_args args = { 0 };
	int c;

	memset(&o, 0, sizeof(o));
	chat_opts_default(&args.chat);
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:" CLI_CHAT_SHORTOPTS, opts, NULL)) != -1) {
		if (cli_chat_option(c, optarg, &args))
			continue;
		switch (c) {
		case 'm': o.model_path = optarg; break;
		case 'T': o.theme = optarg; break;
		case 'd': o.token_delay_ms = atoi(optarg); break;
		default:
			return 2;
		}
	}
	if (optind < argc) {
		cli_error("unexpected argument '%s' (see natter --help)", argv[optind]);
		return 2;
	}
	o.chat = args.chat;
	o.db = args.db;
	o.no_history = args.no_history;
	return ui_run(&o);
}
