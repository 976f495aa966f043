/* Process plumbing of the client: relaying signals to the program the
   server started, ending the way the program ended, and running the
   command directly when no server serves it. */
#ifndef WS_PROCUTIL_H
#define WS_PROCUTIL_H

#include <sys/types.h>

/* From now on, forward signals to the program: pid is the program and
   the leader of its process group.  Terminal-generated signals (INT,
   QUIT, HUP, WINCH, TSTP, CONT) go to the group, as a terminal sends
   them to a foreground group; TERM, USR1 and USR2 go to the program
   only, as kill(1) would.  On SIGTSTP the client stops itself after the
   program, so that the shell's job control sees it stop; SIGCONT from
   `fg` wakes both. */
void ws_forward_signals(pid_t pid);

/* Hold the signals the client relays while it asks the server to start
   the program: one that arrived after the program started but before
   ws_forward_signals would take its default action on the client (and
   the server would then end the program).  ws_release_signals delivers
   what was held: to the program once ws_forward_signals has run, else
   as if it had come just then. */
void ws_hold_signals(void);
void ws_release_signals(void);

/* Stop forwarding (before the client exits or execs): the caller's own
   dispositions back, SIG_IGN included. */
void ws_restore_signals(void);

/* Exit with the program's status: the same code, or death by the same
   signal (without a core file of the client). */
void ws_exit_like(unsigned kind, unsigned value) __attribute__((noreturn));

/* The descriptors above 2 this process has open (from /proc; none where
   it cannot be read), in order, into out; their count, or -1 if there
   are more than max.  They were inherited, so a direct run would have
   them: a server is handed them with 0-2. */
int ws_extra_fds(int *out, int max);

/* The parent of a process, from /proc; 0 if that cannot be told (the
   process has ended, or is ending).  Only a parent read as another
   process's pid is evidence against a server. */
pid_t ws_parent_of(pid_t pid);

/* Run the command directly in this process, optionally with one extra
   environment entry ("NAME=value"); returns only on failure, after
   printing why. */
void ws_exec_direct(char **argv, const char *exe, const char *extra_env,
                    const char *extra_env2);

#endif /* WS_PROCUTIL_H */
