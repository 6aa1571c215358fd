/* outfile.c -- a result file written under a temporary name and renamed into place, and the folders it goes in (outfile.h). */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "natter/outfile.h"

/* The temporaries being written, for outfile_catch_signals' handler
 * (unlink(2) is async-signal-safe): a slot is set once its file exists
 * and cleared once it is renamed or removed.  The commands that catch
 * signals write their files from one thread. */
enum { LIVE_MAX = 8 };
static char *volatile live[LIVE_MAX];

static void
live_set(const char *tmp, char *to)
{
	for (int i = 0; i < LIVE_MAX; i++)
		if (live[i] == tmp) {
			live[i] = to;
			return;
		}
}

static void
on_fatal_signal(int sig)
{
	for (int i = 0; i < LIVE_MAX; i++)
		if (live[i])
			unlink(live[i]);
	signal(sig, SIG_DFL);
	raise(sig);
}

void
outfile_catch_signals(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	/* A signal ignored when natter started (nohup's SIGHUP, SIGINT in
	 * a background job) stays ignored. */
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
			sigaction(sigs[i], &sa, NULL);
}

/* Where a link at PATH points, at the end of its chain, made a path from
 * the current folder (a relative target is relative to the link's folder);
 * NULL if PATH is not a link, or its chain is longer than 40.  A new string. */
static char *
link_target(const char *path)
{
	char buf[PATH_MAX], *cur = strdup(path);

	/* A chain of links (link -> link2 -> missing) is followed to its
	 * end, as open() would: the file written is the missing one. */
	for (int depth = 0; cur && depth <= 40; depth++) {   /* 40 links, then their end */
		const char *slash = strrchr(cur, '/');
		ssize_t n = readlink(cur, buf, sizeof(buf) - 1);
		char *next;

		if (n < 0)
			return depth ? cur : (free(cur), NULL);
		buf[n] = 0;
		if (buf[0] == '/' || !slash)
			next = strdup(buf);
		else if ((next = malloc((size_t)(slash - cur) + (size_t)n + 2)))
			sprintf(next, "%.*s/%s", (int)(slash - cur), cur, buf);
		free(cur);
		cur = next;
	}
	free(cur);
	return NULL;
}

int
outfile_open(struct outfile *o, const char *path, const char *mode, char *err, size_t errlen)
{
	struct stat st;
	const int exists = stat(path, &st) == 0;
	const int loops = !exists && errno == ELOOP;
	const char *slash;
	int fd = -1;

	memset(o, 0, sizeof(*o));
	if (!*path) {
		snprintf(err, errlen, "an empty file name");
		return -1;
	}
	if (loops) {
		snprintf(err, errlen, "%s: %s", path, strerror(ELOOP));
		return -1;
	}
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
	/* A symbolic link's target is replaced, and the link kept; a link to
	 * a file not there yet makes it (as the shell's > does). */
	o->path = exists ? realpath(path, NULL) : link_target(path);
	if (!exists && !o->path)
		o->path = strdup(path);
	o->tmp = o->path ? malloc(strlen(o->path) + 48) : NULL;
	if (!o->tmp) {
		snprintf(err, errlen, "%s: %s", path, o->path ? "out of memory" : strerror(errno));
		free(o->path);
		o->path = NULL;
		return -1;
	}
	/* A new file of its own beside it: a file of that name (another's,
	 * or one a killed run left) is neither truncated nor written through.
	 * Its name is the file's, cut to 200 bytes: a name near the 255-byte
	 * limit stays writable. */
	slash = strrchr(o->path, '/');
	slash = slash ? slash + 1 : o->path;
	for (int i = 0; i < 100; i++) {
		int n = sprintf(o->tmp, "%.*s%.200s.tmp%ld", (int)(slash - o->path), o->path, slash, (long)getpid());
		if (i)
			sprintf(o->tmp + n, ".%d", i);
		fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd >= 0)
		live_set(NULL, o->tmp);
	/* The file replaced keeps its permissions. */
	if (fd >= 0 && exists && fchmod(fd, st.st_mode & 07777) != 0) {
		close(fd);
		unlink(o->tmp);
		live_set(o->tmp, NULL);
		fd = -1;
	}
	o->f = fd >= 0 ? fdopen(fd, mode) : NULL;
	if (!o->f) {
		snprintf(err, errlen, "%s: cannot write it: %s", path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(o->tmp);
			live_set(o->tmp, NULL);
		}
		free(o->tmp);
		free(o->path);
		memset(o, 0, sizeof(*o));
		return -1;
	}
	return 0;
}

/* Makes the rename into PATH's folder last through a crash (best effort: a
 * folder that cannot be opened or synced leaves it to the system). */
static void
sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(dir);
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
	} else if (o->tmp) {
		sync_dir(o->path);
	}
	if (e && o->tmp)
		unlink(o->tmp);
	live_set(o->tmp, NULL);
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
	live_set(o->tmp, NULL);
	free(o->tmp);
	free(o->path);
	memset(o, 0, sizeof(*o));
}

int
outfile_same(const char *path, const char *in)
{
	struct stat so, si;

	/* By inode, not by name: "./a", "a" and a link to it are one file. */
	if (stat(path, &so) != 0 || stat(in, &si) != 0)
		return 0;
	return so.st_dev == si.st_dev && so.st_ino == si.st_ino;
}

/* One folder of outfile_mkdirs: 0, or an errno.  LAST: no folder below it
 * is wanted. */
static int
mkdir_one(const char *path, mode_t mode, int last)
{
	struct stat st;
	int e;

	if (mkdir(path, mode) == 0)
		return 0;
	e = errno;
	/* Already there: some file systems say so with EACCES or EROFS. */
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	/* A file in the way: the folder below it then fails with ENOTDIR
	 * and is the one named, as by mkdir -p; the last has none below. */
	if (e == EEXIST)
		return last ? ENOTDIR : 0;
	return e;
}

int
outfile_mkdirs(const char *dir, mode_t mode, char *err, size_t errlen)
{
	char *p = strdup(dir), *s;
	size_t n = p ? strlen(p) : 0;
	int e = 0;

	while (n > 1 && p[n - 1] == '/')
		p[--n] = 0;   /* "a/b/" is "a/b" */
	if (!p) {
		e = ENOMEM;
	} else if (!n) {
		e = ENOENT;   /* as mkdir("") */
	} else {
		/* Each name that ends at a slash ("a//b": once), then the
		 * whole; the slash that starts a full path ends no name. */
		for (s = p + 1;; s++) {
			if (!*s) {
				e = mkdir_one(p, mode, 1);
				break;
			}
			if (*s != '/' || s[-1] == '/')
				continue;
			*s = 0;
			if ((e = mkdir_one(p, mode, 0)) != 0)
				break;   /* P names the folder that could not be made */
			*s = '/';
		}
	}
	if (e && err)
		snprintf(err, errlen, "cannot create %s: %s", p ? p : dir, strerror(e));
	free(p);
	if (!e)
		return 0;
	errno = e;
	return -1;
}
