/* The Python command line a launch runs, and the server it belongs to.

   A warm server serves exactly one command identity: the interpreter
   (path and the file behind it), its options, the program (-m module,
   -c code or script), the directory that becomes sys.path[0], which of
   fds 0-2 are terminals, and every environment variable that changes
   how Python starts.  The identity is
   written as "key material", a NUL-separated byte string; its checksum
   names the server's socket.  warmstart/command.py builds the same
   material from the same inputs, and the server compares the two byte for
   byte before it serves a request. */
#ifndef WS_COMMAND_H
#define WS_COMMAND_H

#include <limits.h>
#include <stddef.h>

typedef struct {
    char **argv;            /* the Python command line: argv[0] is python */
    int argc;
    char exe[PATH_MAX];     /* the file the kernel runs for argv[0] */
    char found[PATH_MAX];   /* argv[0] as execvp passes it (PATH applied) */
    char kind;              /* 'm' module, 'c' code, 's' script */
    const char *value;      /* module name, code, or script as given */
    int prog;               /* index of the argv element naming the program */
    char script[PATH_MAX];  /* realpath of the script (kind 's') */
    char cwd[PATH_MAX];
} ws_command;

/* Parse argv (argc >= 1).  A program whose "#!" names a Python
   interpreter (a console script, given by path or found on $PATH) is
   parsed as the command the kernel makes of it: cmd->argv is then
   "python [arg] script args...".  Returns 0, or -1 with *why saying why this
   command is run directly rather than through a server (interactive
   mode, reading from stdin, -S, an option not known here...). */
int ws_command_parse(ws_command *cmd, int argc, char **argv,
                     const char **why);

/* Key material for cmd and environment envp; malloc'ed, length in *len.
   NULL on allocation failure. */
char *ws_command_key_material(const ws_command *cmd, char **envp,
                              size_t *len);

/* The directory holding servers' sockets, open (see privdir.h):
   $WARMSTART_SERVER_DIR if set; else $XDG_RUNTIME_DIR/warmstart, or
   /tmp/warmstart-<uid> when that is missing or not private (an
   XDG_RUNTIME_DIR kept across `su` lies in another user's directory).
   Its path goes to out.  Returns the descriptor, or -1 with *why saying
   what was wrong with the first candidate. */
int ws_server_dir(char *out, size_t size, const char **why);

#endif /* WS_COMMAND_H */
