/* cmd-template.c -- `natter template`: render a conversation with a chat template. */
#include "config.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/text.h"
#include "natter/tmpl.h"
#include "natter/tok.h"

int
cmd_template(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "template-file", required_argument, NULL, 'f' },
		{ "builtin", required_argument, NULL, 'b' },
		{ "messages", required_argument, NULL, 'M' },
		{ "add-generation-prompt", no_argument, NULL, 'g' },
		{ "bos", required_argument, NULL, 'B' },
		{ "eos", required_argument, NULL, 'E' },
		{ "enable-thinking", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *model = NULL, *tfile = NULL, *builtin = NULL, *mfile = NULL, *bos = NULL, *eos = NULL;
	int gen = 0, c, rc = 1, n = 0, think = 0;
	char err[512], *src = NULL, *js = NULL, *out = NULL, *bos_m = NULL, *eos_m = NULL;
	size_t len, outlen;
	cJSON *root = NULL, *arr, *it;
	struct tmpl *t = NULL;
	struct tmpl_msg *msgs = NULL;
	struct gguf_file *f = NULL;
	struct tok_vocab *v = NULL;

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'f': tfile = optarg; break;
		case 'b': builtin = optarg; break;
		case 'M': mfile = optarg; break;
		case 'g': gen = 1; break;
		case 'B': bos = optarg; break;
		case 'E': eos = optarg; break;
		case 'T':
			if (!strcmp(optarg, "true"))
				think = 1;
			else if (!strcmp(optarg, "false"))
				think = -1;
			else {
				cli_error("template: --enable-thinking wants true or false");
				return 2;
			}
			break;
		case 'h':
			printf("usage: natter template (-m FILE | --template-file F | --builtin NAME) --messages CONV.json\n"
			    "       [--add-generation-prompt] [--bos S] [--eos S] [--enable-thinking true|false]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (cli_no_more_args("template", argc, argv, optind) < 0)
		return 2;
	if ((!!model + !!tfile + !!builtin) != 1 || !mfile) {
		cli_error("template: needs one of -m FILE, --template-file F or --builtin NAME, and --messages CONV.json");
		return 2;
	}
	if (builtin) {
		const char *b = tmpl_builtin(builtin);
		if (!b) {
			cli_error("template: no built-in template '%s' (chatml, llama2, llama3, phi3, zephyr, gemma)", builtin);
			return 2;
		}
		src = strdup(b);
	} else if (tfile) {
		src = cli_read_file(tfile, &len);
		if (!src)
			return 1;
	} else {
		if (gguf_open(model, &f, err, sizeof(err)) < 0) {
			cli_error("%s", err);
			return 1;
		}
		src = gguf_get_str(f, "tokenizer.chat_template");
		if (!src) {
			char *arch = gguf_get_str(f, "general.architecture");
			const char *g = tmpl_builtin_guess(arch, NULL);
			fprintf(stderr, "%s: %s has no chat template; using the built-in '%s'\n", cli_progname, model, g);
			src = strdup(tmpl_builtin(g));
			free(arch);
		}
		if (tok_vocab_load(f, &v, err, sizeof(err)) == 0) {
			const char *b = tok_text(v, tok_bos(v)), *e = tok_text(v, tok_eos(v));
			bos_m = strdup(b ? b : "");
			eos_m = strdup(e ? e : "");
		}
	}
	js = cli_read_file(mfile, &len);
	if (!js)
		goto out;
	root = cJSON_ParseWithLength(js, len);
	if (!root) {
		cli_error("%s: not valid JSON", mfile);
		goto out;
	}
	/* cJSON decodes \u0000 into a C string, which ends there: the rest of
	 * the message would be dropped without a word.  Messages are C strings
	 * all the way (struct tmpl_msg, the chat layer, the history), so the
	 * file is refused, as natter serve and finetune refuse such JSON. */
	if (memchr(js, '\0', len) || text_json_has_nul(js, len)) {
		cli_error("%s: holds a NUL character (\\u0000), which natter's text cannot keep "
		    "(everything after it would be lost); leave it out", mfile);
		goto out;
	}
	arr = cJSON_IsArray(root) ? root : cJSON_GetObjectItem(root, "messages");
	if (!cJSON_IsArray(arr)) {
		cli_error("%s: expected an array of messages or {\"messages\": [...]}", mfile);
		goto out;
	}
	msgs = calloc(cJSON_GetArraySize(arr) + 1, sizeof(*msgs));
	cJSON_ArrayForEach(it, arr) {
		const char *role = cJSON_GetStringValue(cJSON_GetObjectItem(it, "role"));
		const char *content = cJSON_GetStringValue(cJSON_GetObjectItem(it, "content"));
		if (!role || !content) {
			cli_error("%s: message %d needs string \"role\" and \"content\"", mfile, n + 1);
			goto out;
		}
		msgs[n].role = role;
		msgs[n].content = content;
		n++;
	}
	if (tmpl_compile(src, strlen(src), &t, err, sizeof(err)) < 0) {
		cli_error("chat template: %s", err);
		goto out;
	}
	{
		struct tmpl_opts o = { gen, bos ? bos : bos_m, eos ? eos : eos_m, 0, think };
		int r = tmpl_render(t, msgs, n, &o, &out, &outlen, err, sizeof(err));
		if (r < 0) {
			cli_error(r == TMPL_ERR_RAISED ? "the chat template refuses this conversation: %s" :
			    "chat template: %s", err);
			goto out;
		}
	}
	fwrite(out, 1, outlen, stdout);
	rc = 0;
out:
	free(out);
	free(msgs);
	cJSON_Delete(root);
	free(js);
	free(src);
	free(bos_m);
	free(eos_m);
	tmpl_free(t);
	tok_vocab_free(v);
	gguf_close(f);
	return rc;
}
