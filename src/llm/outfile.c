/* outfile.c -- a result file written under a temporary name and renamed into place (outfile.h). */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "natter/outfile.h"

int
outfile_open(struct outfile *o, const char *path, const char *mode, char *err, size_t errlen)
{
	struct stat st;
	const int exists = stat(path, &st) == 0;
	int fd;

	memset(o, 0, sizeof(*o));
	if (exists && S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: is a folder", path);
		return -1;
	}
	if (exists && !S_ISREG(st.st_mode)) {
		/* A device or a FIFO: nothing to keep, nothing to rename over. */
		o->path = strdup(path);
		o->f = o->path ? fopen(path, mode) : NULL;
		if (!o->f) {
			snprintf(err, errlen, "%s: cannot write it: %s", path, o->path ? strerror(errno) : "out of memory");
			free(o->path);
			o->path = NULL;
			return -1;
		}
		return 0;
	}
	/* A symbolic link's target is replaced, and the link kept. */
	o->path = exists ? realpath(path, NULL) : strdup(path);
	o->tmp = o->path ? malloc(strlen(o->path) + 32) : NULL;
	if (!o->tmp) {
		snprintf(err, errlen, "%s: %s", path, o->path ? "out of memory" : strerror(errno));
		free(o->path);
		o->path = NULL;
		return -1;
	}
	sprintf(o->tmp, "%s.tmp%ld", o->path, (long)getpid());
	fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
	/* The file replaced keeps its permissions. */
	if (fd >= 0 && exists && fchmod(fd, st.st_mode & 07777) != 0) {
		close(fd);
		unlink(o->tmp);
		fd = -1;
	}
	o->f = fd >= 0 ? fdopen(fd, mode) : NULL;
	if (!o->f) {
		snprintf(err, errlen, "%s: cannot write it: %s", path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(o->tmp);
		}
		free(o->tmp);
		free(o->path);
		memset(o, 0, sizeof(*o));
		return -1;
	}
	return 0;
}

int
outfile_commit(struct outfile *o, char *err, size_t errlen)
{
	int e = 0;

	if (fflush(o->f) != 0 || (o->tmp && fsync(fileno(o->f)) != 0))
		e = errno;
	else if (ferror(o->f))
		e = EIO;   /* an earlier write failed */
	if (fclose(o->f) != 0 && !e)
		e = errno;
	o->f = NULL;
	if (e) {
		snprintf(err, errlen, "%s: writing failed: %s", o->path, strerror(e));
	} else if (o->tmp && rename(o->tmp, o->path) != 0) {
		e = errno;
		snprintf(err, errlen, "%s: cannot rename into place: %s", o->path, strerror(e));
	}
	if (e && o->tmp)
		unlink(o->tmp);
	free(o->tmp);
	free(o->path);
	memset(o, 0, sizeof(*o));
	return e ? -1 : 0;
}

void
outfile_abort(struct outfile *o)
{
	if (o->f)
		fclose(o->f);
	if (o->tmp)
		unlink(o->tmp);
	free(o->tmp);
	free(o->path);
	memset(o, 0, sizeof(*o));
}
