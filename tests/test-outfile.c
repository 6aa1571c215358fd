/* test-outfile.c -- the folders a result file goes in (outfile_mkdirs): made nested with the mode asked, a folder already there, a file in the way, repeated and trailing slashes; which file an output would replace (outfile_same); a temporary name already taken (outfile_open). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "natter/outfile.h"
#include "test.h"

static char dir[256];

/* The permission bits of folder NAME under DIR, or -1 when it is not a folder. */
static int
mode_of(const char *name)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
		return -1;
	return (int)(st.st_mode & 0777);
}

/* outfile_mkdirs of DIR/NAME: its return, with errno in *E and the message in ERR. */
static int
mk(const char *name, mode_t mode, int *e, char *err, size_t errlen)
{
	char p[512];
	int rc;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	err[0] = 0;
	errno = 0;
	rc = outfile_mkdirs(p, mode, err, errlen);
	*e = errno;
	return rc;
}

static void
test_nested(void)
{
	char err[600] = "";
	int e;

	/* The two modes natter asks for: its private data folder, the models folder. */
	CHECK(mk("a/b/c", 0700, &e, err, sizeof(err)) == 0, "a/b/c: %s", err);
	CHECK(mode_of("a") == 0700 && mode_of("a/b") == 0700 && mode_of("a/b/c") == 0700,
	    "a/b/c modes %o %o %o, not 700", mode_of("a"), mode_of("a/b"), mode_of("a/b/c"));
	CHECK(mk("m/n", 0755, &e, err, sizeof(err)) == 0, "m/n: %s", err);
	CHECK(mode_of("m") == 0755 && mode_of("m/n") == 0755, "m/n modes %o %o, not 755", mode_of("m"),
	    mode_of("m/n"));

	/* Already there, whole or in part: fine, and the folders keep their mode. */
	CHECK(mk("a/b/c", 0755, &e, err, sizeof(err)) == 0, "a/b/c again: %s", err);
	CHECK(mode_of("a/b/c") == 0700, "an existing folder's mode changed to %o", mode_of("a/b/c"));
	CHECK(mk("a/b/d", 0755, &e, err, sizeof(err)) == 0, "a/b/d: %s", err);
	CHECK(mode_of("a/b") == 0700 && mode_of("a/b/d") == 0755, "a/b/d modes %o %o", mode_of("a/b"),
	    mode_of("a/b/d"));
	CHECK(outfile_mkdirs(dir, 0700, NULL, 0) == 0, "the test folder itself, with no ERR");
	CHECK(outfile_mkdirs("/", 0700, NULL, 0) == 0, "/");
}

static void
test_slashes(void)
{
	char err[600] = "";
	int e;

	CHECK(mk("t/u/", 0700, &e, err, sizeof(err)) == 0, "t/u/: %s", err);
	CHECK(mode_of("t/u") == 0700, "t/u/ made no folder t/u (%d)", mode_of("t/u"));
	CHECK(mk("t/v//", 0700, &e, err, sizeof(err)) == 0, "t/v//: %s", err);
	CHECK(mode_of("t/v") == 0700, "t/v// made no folder t/v (%d)", mode_of("t/v"));
	CHECK(mk("r//s///w", 0700, &e, err, sizeof(err)) == 0, "r//s///w: %s", err);
	CHECK(mode_of("r/s/w") == 0700, "r//s///w made no folder r/s/w (%d)", mode_of("r/s/w"));
	CHECK(mk("t/u/", 0700, &e, err, sizeof(err)) == 0, "t/u/ again: %s", err);
}

static void
test_file_in_the_way(void)
{
	char p[512], want[700], err[600] = "";
	struct stat st;
	FILE *f;
	int e;

	snprintf(p, sizeof(p), "%s/f", dir);
	f = fopen(p, "w");
	CHECK(f && fputs("kept\n", f) >= 0 && fclose(f) == 0, "cannot write %s", p);

	/* The last name a file. */
	CHECK(mk("f", 0700, &e, err, sizeof(err)) == -1, "a file taken for a folder");
	CHECK(e == ENOTDIR, "a file as the folder: errno %d (%s), not ENOTDIR", e, strerror(e));
	snprintf(want, sizeof(want), "cannot create %s/f: %s", dir, strerror(ENOTDIR));
	CHECK(!strcmp(err, want), "a file as the folder: [%s], not [%s]", err, want);
	CHECK(mk("f/", 0700, &e, err, sizeof(err)) == -1 && e == ENOTDIR, "f/: errno %d", e);

	/* A file above: the first folder that cannot be made is named. */
	CHECK(mk("f/x/y", 0700, &e, err, sizeof(err)) == -1, "a folder made under a file");
	CHECK(e == ENOTDIR, "a file above: errno %d (%s), not ENOTDIR", e, strerror(e));
	snprintf(want, sizeof(want), "cannot create %s/f/x: %s", dir, strerror(ENOTDIR));
	CHECK(!strcmp(err, want), "a file above: [%s], not [%s]", err, want);
	CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 5, "the file in the way was touched");

	/* A folder natter may not write in (root may write anywhere). */
	if (geteuid() != 0) {
		snprintf(p, sizeof(p), "%s/ro", dir);
		CHECK(mkdir(p, 0500) == 0, "mkdir %s", p);
		CHECK(mk("ro/x/y", 0700, &e, err, sizeof(err)) == -1 && e == EACCES, "ro/x/y: errno %d", e);
		snprintf(want, sizeof(want), "cannot create %s/ro/x: %s", dir, strerror(EACCES));
		CHECK(!strcmp(err, want), "no permission: [%s], not [%s]", err, want);
		CHECK(mk("ro", 0700, &e, err, sizeof(err)) == 0, "ro, there already: %s", err);
	}
}

/* outfile_same: one file by any name (itself, another spelling, a hard or symbolic
 * link, either way round); another file with the same bytes, or a name not taken, is not. */
static void
test_same(void)
{
	char a[512], a2[512], hard[512], soft[512], copy[512], none[512];
	FILE *f;

	snprintf(a, sizeof(a), "%s/same-a", dir);
	snprintf(a2, sizeof(a2), "%s/./same-a", dir);
	snprintf(hard, sizeof(hard), "%s/same-hard", dir);
	snprintf(soft, sizeof(soft), "%s/same-soft", dir);
	snprintf(copy, sizeof(copy), "%s/same-copy", dir);
	snprintf(none, sizeof(none), "%s/same-none", dir);
	for (int i = 0; i < 2; i++) {
		f = fopen(i ? copy : a, "w");
		CHECK(f && fputs("data\n", f) >= 0 && fclose(f) == 0, "cannot write %s", i ? copy : a);
	}
	CHECK(link(a, hard) == 0 && symlink("same-a", soft) == 0, "cannot link %s", a);
	CHECK(outfile_same(a, a) == 1, "a file is not itself");
	CHECK(outfile_same(a2, a) == 1, "%s is not %s", a2, a);
	CHECK(outfile_same(hard, a) == 1 && outfile_same(a, hard) == 1, "a hard link is another file");
	CHECK(outfile_same(soft, a) == 1 && outfile_same(a, soft) == 1, "a symbolic link is another file");
	CHECK(outfile_same(copy, a) == 0, "a copy is the same file");
	CHECK(outfile_same(none, a) == 0 && outfile_same(a, none) == 0, "a name not taken is a file");
	CHECK(outfile_same(none, none) == 0, "a name not taken is itself");
}

/* outfile_open and commit: a file of the temporary name already there (another's, or
 * one a killed run left) is neither truncated nor renamed into place; the result is. */
static void
test_tmp_taken(void)
{
	char out[512], tmp[600], err[256], buf[64] = { 0 };
	struct outfile o;
	FILE *f;

	snprintf(out, sizeof(out), "%s/result.txt", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp%ld", out, (long)getpid());
	f = fopen(tmp, "w");
	CHECK(f && fputs("someone's\n", f) >= 0 && fclose(f) == 0, "cannot write %s", tmp);
	CHECK(outfile_open(&o, out, "w", err, sizeof(err)) == 0, "outfile_open: %s", err);
	CHECK(o.f && fputs("result\n", o.f) >= 0, "cannot write the result");
	CHECK(outfile_commit(&o, err, sizeof(err)) == 0, "outfile_commit: %s", err);
	f = fopen(tmp, "r");
	CHECK(f && fgets(buf, sizeof(buf), f) && !strcmp(buf, "someone's\n"), "the file of the temporary name "
	    "was changed: '%s'", buf);
	if (f)
		fclose(f);
	f = fopen(out, "r");
	CHECK(f && fgets(buf, sizeof(buf), f) && !strcmp(buf, "result\n"), "the result is '%s'", buf);
	if (f)
		fclose(f);
}

/* Writes "text\n" to PATH through outfile; 0 or -1 with ERR. */
static int
write_text(const char *path, const char *text, char *err, size_t errlen)
{
	struct outfile o;
	if (outfile_open(&o, path, "w", err, errlen) < 0)
		return -1;
	if (fprintf(o.f, "%s\n", text) < 0) {
		outfile_abort(&o);
		snprintf(err, errlen, "fprintf failed");
		return -1;
	}
	return outfile_commit(&o, err, errlen);
}

/* A name of 250 bytes (its temporary's would pass the 255-byte limit); a
 * link to a file not there yet (the file is made, the link kept); an empty
 * name refused. */
static void
test_names(void)
{
	char name[256], path[800], target[800], link[800], err[600], buf[64] = { 0 };
	struct stat st;
	FILE *f;

	memset(name, 'a', 245);
	snprintf(name + 245, sizeof(name) - 245, ".gguf");
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CHECK(write_text(path, "long", err, sizeof(err)) == 0, "a 250-byte name: %s", err);
	CHECK(stat(path, &st) == 0 && st.st_size == 5, "the file of a 250-byte name");
	snprintf(target, sizeof(target), "%s/target.txt", dir);
	snprintf(link, sizeof(link), "%s/link.txt", dir);
	CHECK(symlink("target.txt", link) == 0, "symlink: %s", strerror(errno));
	CHECK(write_text(link, "through", err, sizeof(err)) == 0, "through a dangling link: %s", err);
	CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode), "the link was replaced by a file");
	f = fopen(target, "r");
	CHECK(f && fgets(buf, sizeof(buf), f) && !strcmp(buf, "through\n"), "the link's target holds '%s'", buf);
	if (f)
		fclose(f);
	CHECK(write_text("", "x", err, sizeof(err)) < 0 && strstr(err, "empty"), "an empty name: '%s'", err);
	/* A chain: link2.txt -> link3.txt -> sub/end.txt (missing, the
	 * relative target of a link in another folder); both links stay. */
	{
		char l2[800], l3[800], sub[800], end[800];
		snprintf(l2, sizeof(l2), "%s/link2.txt", dir);
		snprintf(l3, sizeof(l3), "%s/link3.txt", dir);
		snprintf(sub, sizeof(sub), "%s/sub", dir);
		snprintf(end, sizeof(end), "%s/sub/end.txt", dir);
		CHECK(mkdir(sub, 0777) == 0 && symlink("link3.txt", l2) == 0 && symlink("sub/end.txt", l3) == 0,
		    "the chain: %s", strerror(errno));
		CHECK(write_text(l2, "chain", err, sizeof(err)) == 0, "through a chain of links: %s", err);
		CHECK(lstat(l2, &st) == 0 && S_ISLNK(st.st_mode) && lstat(l3, &st) == 0 && S_ISLNK(st.st_mode),
		    "a link of the chain was replaced by a file");
		CHECK(stat(end, &st) == 0 && st.st_size == 6, "the chain's end was not written");
		/* A loop is refused, the links left as they are. */
		snprintf(l2, sizeof(l2), "%s/loop-a", dir);
		snprintf(l3, sizeof(l3), "%s/loop-b", dir);
		CHECK(symlink("loop-b", l2) == 0 && symlink("loop-a", l3) == 0, "the loop: %s", strerror(errno));
		CHECK(write_text(l2, "loop", err, sizeof(err)) < 0 && strstr(err, "symbolic links"), "a loop of links: '%s'", err);
		CHECK(lstat(l2, &st) == 0 && S_ISLNK(st.st_mode), "the loop's link was replaced");
	}
}

int
main(void)
{
	char cmd[600];

	umask(0);   /* the modes asked for are the modes made */
	snprintf(dir, sizeof(dir), "/tmp/natter-test-outfile-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 99;
	}
	test_nested();
	test_slashes();
	test_file_in_the_way();
	test_same();
	test_tmp_taken();
	test_names();
	if (!t_fail) {
		snprintf(cmd, sizeof(cmd), "chmod -R u+w '%s' && rm -rf '%s'", dir, dir);
		if (system(cmd) != 0)
			fprintf(stderr, "note: %s was not removed\n", dir);
	} else {
		fprintf(stderr, "left for a look: %s\n", dir);
	}
	return test_done("test-outfile");
}
