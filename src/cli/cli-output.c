/* cli-output.c -- a command's output file checked against the files it reads and the history database. */
#include "config.h"

#include <stdio.h>

#include "cli/cli.h"
#include "natter/outfile.h"
#include "natter/store.h"

/* The database and the files SQLite keeps beside it: its recent changes
 * live in the write-ahead log until they are copied in, so writing over
 * any of them loses history as surely as writing over the database. */
static const struct {
	const char *suffix, *what;
} db_files[] = {
	{ "", "the history database" },
	{ "-wal", "the history database's write-ahead log" },
	{ "-journal", "the history database's rollback journal" },
	{ "-shm", "the history database's shared-memory index" },
};

/* Whether OUT is the database at PATH or one of its side files (said). */
static int
db_clobbered(const char *cmd, const char *opt, const char *out, const char *path)
{
	char file[4200];

	for (size_t i = 0; i < sizeof(db_files) / sizeof(db_files[0]); i++) {
		snprintf(file, sizeof(file), "%s%s", path, db_files[i].suffix);
		if (outfile_same(out, file)) {
			cli_error("%s: %s %s is %s (%s): it would be overwritten", cmd, opt, out, db_files[i].what, file);
			return 1;
		}
	}
	return 0;
}

int
cli_output_check(const char *cmd, const char *opt, const char *out, const char *db, const struct cli_input *in,
		 int n)
{
	char path[4096], err[1024];

	if (!*out) {
		cli_error("%s: %s wants a file name, not an empty one", cmd, opt);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (in[i].path && outfile_same(out, in[i].path)) {
			cli_error("%s: %s %s is the same file as %s %s: it would be overwritten", cmd, opt, out, in[i].opt,
			    in[i].path);
			return -1;
		}
	}
	/*
	 * Every command, not only those that read it: the history is the one
	 * file natter keeps that nothing else can rebuild.  The database the
	 * command was given (--db), and the user's own ($NATTER_DB, the config
	 * file's, the default place), which a --db elsewhere leaves no less
	 * worth keeping.  A config file that cannot be read names none (its
	 * error is said; a command that does not read the history goes on),
	 * and the default place is checked all the same.
	 */
	if (db && db_clobbered(cmd, opt, out, db))
		return -1;
	if (cli_db_path(NULL, 0, path, sizeof(path), err, sizeof(err)) == 0 && db_clobbered(cmd, opt, out, path))
		return -1;
	if (store_default_path_ex(path, sizeof(path), 0, err, sizeof(err)) && db_clobbered(cmd, opt, out, path))
		return -1;
	return 0;
}
