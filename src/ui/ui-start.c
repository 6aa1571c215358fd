/* ui-start.c -- start-up: the model from the models folder, the config file, paging the weights in. */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/gguf.h"
#include "natter/llm.h"
#include "ui/ui.h"

/* The models folder, and the .gguf files in it: calls FN for each (if not
 * NULL) and returns how many there are. */
static int
scan_models(char *dir, size_t n, void (*fn)(const char *path, void *ctx), void *ctx)
{
	const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	DIR *d;
	struct dirent *de;
	int count = 0;

	if (xdg && *xdg)
		snprintf(dir, n, "%s/natter/models", xdg);
	else
		snprintf(dir, n, "%s/.local/share/natter/models", home ? home : "");
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l > 5 && !strcmp(de->d_name + l - 5, ".gguf")) {
			char path[8192];
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (fn)
				fn(path, ctx);
			count++;
		}
	}
	if (d)
		closedir(d);
	return count;
}

static void
print_model(const char *path, void *ctx)
{
	int *n = ctx;
	if ((*n)++ == 0)
		fprintf(stderr, "Models found there:\n");
	fprintf(stderr, "  %s\n", path);
}

void
ui_start_list_models(void)
{
	char dir[4096];
	int n = 0;

	scan_models(dir, sizeof(dir), NULL, NULL);
	fprintf(stderr, "Get a GGUF model (for example TinyLlama, Qwen2.5 or Phi-3 from Hugging Face, in\n"
	    "Q4_K_M), then run:  natter -m FILE.gguf\n"
	    "or put it in %s/ and run natter without -m.\n", dir);
	scan_models(dir, sizeof(dir), print_model, &n);
}

static void
keep_model(const char *path, void *ctx)
{
	char **found = ctx;
	free(*found);
	*found = strdup(path);
}

char *
ui_start_default_model(void)
{
	char dir[4096], *found = NULL;
	if (scan_models(dir, sizeof(dir), keep_model, &found) != 1) {
		free(found);
		return NULL;
	}
	return found;
}

void
ui_start_warm(struct ui *u)
{
	const struct gguf_file *f;
	const volatile uint8_t *p;
	size_t step = 4096, chunk = (size_t)64 << 20;
	unsigned sum = 0;

	if (!u->m)
		return;   /* a remote server: no weights here */
	f = llm_model_gguf(u->m);
	p = f->map;

	for (size_t off = 0; off < f->size; off += chunk) {
		size_t end = off + chunk < f->size ? off + chunk : f->size;
		for (size_t i = off; i < end; i += step)
			sum += p[i];
		ui_draw_loading(u->model_file, (double)end / f->size);
	}
	(void)sum;
}
