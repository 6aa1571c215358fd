/* fuzz-replay.c -- runs a fuzz target over saved inputs (regressions), without libFuzzer. */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
main(int argc, char **argv)
{
	int n = 0;
	for (int a = 1; a < argc; a++) {
		DIR *d = opendir(argv[a]);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			char path[4096];
			FILE *f;
			long len;
			uint8_t *buf;
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[a], de->d_name);
			f = fopen(path, "rb");
			if (!f)
				continue;
			fseek(f, 0, SEEK_END);
			len = ftell(f);
			fseek(f, 0, SEEK_SET);
			buf = malloc(len > 0 ? len : 1);
			if (buf && fread(buf, 1, len, f) == (size_t)len) {
				LLVMFuzzerTestOneInput(buf, (size_t)len);   /* aborts on a regression */
				n++;
			}
			free(buf);
			fclose(f);
		}
		if (d)
			closedir(d);
	}
	printf("replayed %d inputs\n", n);
	return 0;
}
