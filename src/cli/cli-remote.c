/* cli-remote.c -- both chat front ends over a remote OpenAI-compatible server: the key from the environment, the model to ask for, the session. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "natter/chat.h"
#include "natter/http.h"
#include "natter/remote.h"

const char cli_remote_help[] =
"  --remote URL          chat with an OpenAI-compatible server (vLLM, llama-server,\n"
"                        ollama, LM Studio, TGI, OpenAI) instead of a model file;\n"
"                        -m/--model NAME is then the server's model (default: its only one)\n"
"  --api-key-env VAR     the variable holding the server's API key (default\n"
"                        OPENAI_API_KEY, when set); the key is never stored or shown\n"
"  --remote-extras on|off  send top_k, min_p and repeat_penalty (default on; left out\n"
"                        for the session once the server refuses one)\n"
"  --connect-timeout S   seconds to wait for a connection (default 10)\n"
"  --read-timeout S      seconds a reply may stay silent before it counts as cut (default 300)\n";

int
cli_remote_opts(const struct cli_chat_args *a, struct remote_opts *ro)
{
	const char *var = a->api_key_env ? a->api_key_env : "OPENAI_API_KEY";
	const char *key = var[0] ? getenv(var) : NULL;

	memset(ro, 0, sizeof(*ro));
	if (a->api_key_env && (!a->api_key_env[0] || !key || !key[0])) {
		/* A variable named on purpose must hold the key. */
		cli_error("--api-key-env %s: that environment variable is not set or empty", a->api_key_env);
		return -1;
	}
	ro->url = a->remote;
	ro->api_key = key && key[0] ? key : NULL;
	ro->api_key_env = var;
	ro->no_extras = !a->remote_extras;
	ro->connect_timeout_s = a->connect_timeout_s;
	ro->read_timeout_s = a->read_timeout_s;
	return 0;
}

int
cli_remote_wanted(struct cli_chat_args *a, const char *cli_model)
{
	struct stat st;
	if (a->remote && !a->remote_on_cli && cli_model && stat(cli_model, &st) == 0 && S_ISREG(st.st_mode))
		a->remote = NULL;
	return a->remote != NULL;
}

int
cli_remote_session(const struct cli_chat_args *a, const char *cli_model, struct chat **out)
{
	struct remote_opts ro;
	char err[1024], model[256], base[1024];

	*out = NULL;
	/* Adapters change a model's weights, which only a model run here has:
	 * said before anything is sent.  So are the other settings of a model
	 * run here, when given on the command line (the config file's apply
	 * to the model files it is also for). */
	if (a->chat.n_lora > 0) {
		cli_error("--lora: LoRA adapters apply to a model run here, not to one on a server (%s)", a->remote);
		return -1;
	}
	if (a->local_on_cli) {
		cli_error("%s: applies to a model run here, not to one on a server (%s), which has its own", a->local_on_cli,
		    a->remote);
		return -1;
	}
	if (cli_remote_opts(a, &ro) < 0)
		return -1;
	if (remote_url_base(a->remote, base, sizeof(base), err, sizeof(err)) < 0) {
		cli_error("%s", err);
		return -1;
	}
	if (http_global_init(err, sizeof(err)) < 0) {
		cli_error("%s", err);
		return -1;
	}
	/* -m on the command line names the server's model; so does the config
	 * file's model when the config file names the server too (with
	 * --remote given here, the config's model is a local file's). */
	ro.model = cli_model ? cli_model : !a->remote_on_cli ? a->model : NULL;
	if (!ro.model || !ro.model[0]) {
		if (remote_model_default(&ro, model, sizeof(model), err, sizeof(err)) < 0) {
			cli_error("%s: %s", base, err);
			return -1;
		}
		ro.model = model;
	}
	if (remote_chat_new(&ro, &a->chat, out, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		return -1;
	}
	return 0;
}
