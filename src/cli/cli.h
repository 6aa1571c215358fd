/* cli.h -- the command-line subcommands, each a front end over the llm/store APIs. */
#ifndef NATTER_CLI_H
#define NATTER_CLI_H

#include <stdio.h>

/* Each returns the process exit status: 0 ok, 1 runtime error, 2 usage error. */
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_rate(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_ui(int argc, char **argv);

struct store;
/* Opens the store at DB (NULL: the default path); prints the error. */
struct store *cli_store_open(const char *db, unsigned flags);

/* Shared helpers (main.c). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads a whole file into a new buffer (caller frees); NULL and a message on failure. */
char *cli_read_file(const char *path, size_t *len);
extern const char *cli_progname;
/* Writes model text to stdout: byte for byte into pipes and files; on a
 * terminal with control characters made visible and bad UTF-8 replaced. */
void cli_write_text(const char *s, size_t n, int tty);
/* Seconds on a monotonic clock. */
double cli_now(void);

#endif
