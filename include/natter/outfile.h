/* outfile.h -- a result file written so that a failure never leaves half of one in its place, and the folders it goes in. */
#ifndef NATTER_OUTFILE_H
#define NATTER_OUTFILE_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * A file named by the user (-o FILE): a regular file, or a name not yet
 * taken, is written under a temporary name beside it and renamed over it
 * once complete, so that a full disk or a stop leaves the old file (or
 * none) and never a cut one; the target of a symbolic link is the file
 * replaced, and the link stays.  Anything else that exists (a device such
 * as /dev/stdout, a FIFO) is written directly: there is no file to keep.
 */
struct outfile {
	FILE *f;
	char *path;     /* what is replaced (a link's target), or written */
	char *tmp;      /* the temporary beside it; NULL when written directly */
};

/* Opens PATH for writing in MODE ("w", "wb").  Returns 0, or -1 with ERR
 * naming PATH. */
int outfile_open(struct outfile *o, const char *path, const char *mode, char *err, size_t errlen);
/* Flushes, syncs and closes the file, and renames it into place.  Returns
 * 0, or -1 with ERR (the temporary removed, the old file left as it was). */
int outfile_commit(struct outfile *o, char *err, size_t errlen);
/* Gives up: closes the file and removes the temporary (O may be zeroed,
 * or committed: then nothing is done). */
void outfile_abort(struct outfile *o);
/* For a command that writes one big file and has no Ctrl-C handling of
 * its own (mkmodel): SIGINT, SIGTERM and SIGHUP remove the temporaries
 * being written, then end the program as the signal would have (one
 * ignored when the program started stays ignored). */
void outfile_catch_signals(void);
/* Whether writing PATH would replace the file IN: both exist and are one
 * file (the same device and inode; symbolic links followed, as
 * outfile_open follows them), whatever their names.  Returns 1 or 0; a
 * name that does not exist yet, or cannot be looked at, holds nothing to
 * lose: 0.  Any thread. */
int outfile_same(const char *path, const char *in);

/* Makes folder DIR and each missing folder above it (mkdir -p), with MODE
 * less the umask; a folder already there is fine, and so are repeated and
 * trailing slashes.  Returns 0, or -1 with errno set (ENOTDIR when a part
 * of DIR is a file) and, when ERR is not NULL, ERR naming the first folder
 * that could not be made.  Any thread. */
int outfile_mkdirs(const char *dir, mode_t mode, char *err, size_t errlen);

#endif
