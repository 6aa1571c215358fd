/* fuzz-replay.c -- runs a fuzz target over saved inputs (regressions), without libFuzzer. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replays every file of DIR (not its dot files); returns how many, or -1
 * with a message when DIR or one of its files cannot be read. */
static int
replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d) {
		fprintf(stderr, "fuzz-replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		char path[4096];
		FILE *f;
		long len;
		uint8_t *buf;
		int ok;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "rb");
		if (!f) {
			fprintf(stderr, "fuzz-replay: %s: %s\n", path, strerror(errno));
			closedir(d);
			return -1;
		}
		ok = fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0;
		buf = ok ? malloc(len > 0 ? (size_t)len : 1) : NULL;
		ok = buf && fread(buf, 1, (size_t)len, f) == (size_t)len;
		fclose(f);
		if (!ok) {
			fprintf(stderr, "fuzz-replay: %s: cannot read it\n", path);
			free(buf);
			closedir(d);
			return -1;
		}
		LLVMFuzzerTestOneInput(buf, (size_t)len);   /* aborts on a regression */
		free(buf);
		n++;
	}
	closedir(d);
	return n;
}

/* Each argument is a folder of inputs.  A missing or empty folder fails:
 * a replay that replays nothing must not pass. */
int
main(int argc, char **argv)
{
	int total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR...\n", argv[0]);
		return 2;
	}
	for (int a = 1; a < argc; a++) {
		int n = replay_dir(argv[a]);
		if (n < 0)
			return 1;
		if (n == 0) {
			fprintf(stderr, "fuzz-replay: %s holds no inputs: nothing was replayed\n", argv[a]);
			return 1;
		}
		printf("%s: replayed %d inputs\n", argv[a], n);
		total += n;
	}
	printf("replayed %d inputs\n", total);
	return 0;
}
