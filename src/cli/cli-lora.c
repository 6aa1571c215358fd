/* cli-lora.c -- --lora FILE[:SCALE] for every command: reading the option, opening the adapters, attaching them. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/llm.h"
#include "natter/lora.h"
#include "natter/sha256.h"

void
cli_lora_digest(const void *data, size_t len, char hex[65])
{
	struct sha256 h;
	sha256_init(&h);
	sha256_update(&h, data, len);
	sha256_final_hex(&h, hex);
}

int
cli_lora_parse(const char *arg, char **path, float *scale, char *err, size_t errlen)
{
	const char *colon = strrchr(arg, ':');
	char *end;
	float v;

	*path = NULL;
	*scale = 1.0f;
	if (!arg[0]) {
		snprintf(err, errlen, "give an adapter file, FILE or FILE:SCALE");
		return -1;
	}
	if (colon && colon[1]) {
		/* FILE:SCALE when what follows the last colon is a number; a path
		 * with a colon of its own stays whole. */
		double d = strtod(colon + 1, &end);
		if (end != colon + 1 && !*end) {
			if (!isfinite(d) || fabs(d) > LORA_SCALE_MAX) {
				snprintf(err, errlen, "'%s': the scale is %s", arg,
				    isfinite(d) ? "out of range (-1e6 to 1e6; 0 turns the adapter off)" : "not a finite number");
				return -1;
			}
			v = (float)d;
			if (colon == arg) {
				snprintf(err, errlen, "'%s': no file before the scale", arg);
				return -1;
			}
			*scale = v;
			*path = strndup(arg, (size_t)(colon - arg));
			if (!*path) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			return 0;
		}
	}
	*path = strdup(arg);
	if (!*path) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int
cli_lora_add(struct cli_lora *l, const char *arg)
{
	char err[256];

	if (l->n >= CHAT_MAX_ADAPTERS) {
		cli_error("--lora: at most %d adapters", CHAT_MAX_ADAPTERS);
		return -1;
	}
	if (cli_lora_parse(arg, &l->path[l->n], &l->scale[l->n], err, sizeof(err)) < 0) {
		cli_error("--lora: %s", err);
		return -1;
	}
	l->n++;
	return 0;
}

void
cli_lora_notice(const struct lora_adapter *a, const struct llm_model *m)
{
	char note[1024];

	if (lora_model_notice(a, m, note, sizeof(note)))
		fprintf(stderr, "%s: warning: %s\n", cli_progname, note);
}

int
cli_lora_attach(struct cli_lora *l, const struct llm_model *m, struct llm_ctx *c)
{
	char err[512];

	for (int i = 0; i < l->n; i++) {
		if (l->ad[i])
			continue;
		if (lora_open(l->path[i], m, l->scale[i], cli_lora_digest, &l->ad[i], err, sizeof(err)) < 0) {
			cli_error("%s", err);
			return -1;
		}
		cli_lora_notice(l->ad[i], m);
	}
	if (l->n && llm_ctx_set_adapters(c, (const struct lora_adapter *const *)l->ad, l->scale, l->n, err,
	    sizeof(err)) < 0) {
		cli_error("%s", err);
		return -1;
	}
	return 0;
}

void
cli_lora_free(struct cli_lora *l)
{
	for (int i = 0; i < l->n; i++) {
		lora_free(l->ad[i]);
		free(l->path[i]);
	}
	memset(l, 0, sizeof(*l));
}
