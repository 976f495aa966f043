/* The conversation between warmstart-exec and a warm server: the one
   reference for every message (src/warmstart/protocol.py is the Python
   end, with the same tags and limits).

   Every message is an 8-byte header -- a 4-byte tag and the payload
   length (uint32, host order: both ends run on one machine) -- followed
   by the payload.

   Both ends check who the other is before anything else: the server
   serves only its own uid (SO_PEERCRED of the client); the client sends
   RUN only to a socket whose listener has its uid, and takes the pid of
   a PID reply only if /proc shows that process as the listener's child.
   The server then compares the client's credentials and confinement
   with its own (src/warmstart/confinement.py) and answers NOPE if they
   differ, before any worker sees the launch.

   client -> server
     "RUN "  the launch.  Payload: NUL-terminated fields
               protocol version ("2"), umask (octal), cwd,
               argc, argv[0..argc-1], envc, env[0..envc-1],
               nlimits, then per limit "resource soft hard" (decimal,
               RLIM_INFINITY as its unsigned value),
               "ignored blocked": the signals the client ignores and
               blocks, as hexadecimal masks (bit n-1 for signal n),
               the numbers of the client's other open descriptors
               (space-separated, at most WS_MAX_FDS - 3; may be empty)
             with the client's fds 0, 1 and 2 and then those others
             attached (SCM_RIGHTS) to the header, in that order.
     "STOP"  management: the server answers BYE, removes its socket and
             exits.

   server or worker -> client
     "NOPE"  not served (stale server, another command, a limit that
             cannot be applied...); payload: why.  Nothing has run: the
             client runs the command directly.
     "PID "  the program is starting; payload: its pid (uint32), also
             its process group.
     "EXIT"  the program ended; payload: how (uint32: 0 exit, 1 signal)
             and the code or signal number (uint32).  The worker sends it
             on a normal exit; the server sends it when it reaps a worker
             (which covers death by a signal and os._exit).  The first
             one counts.
     "BYE "  the answer to STOP; no payload.

   server -> spare worker (a socketpair inside the server's process tree,
   not a client's socket)
     "HAND"  a launch the server has checked.  Payload: marshal of
             (settable, RUN payload), settable being what the worker
             takes over from the client (confinement.check) or None;
             the client's connection and then the RUN's fds attached. */
#ifndef WS_PROTOCOL_H
#define WS_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WS_PROTOCOL_VERSION "2"
#define WS_MAX_MESSAGE (1u << 20)
/* Descriptors one RUN carries: 0-2 and up to 61 others (a launch with
   more runs directly). */
#define WS_MAX_FDS 64

enum ws_exit_kind { WS_EXITED = 0, WS_SIGNALED = 1 };

typedef struct {
    char tag[5];            /* NUL-terminated for printing */
    uint32_t len;
    char data[4096];        /* replies are short; longer ones are cut */
} ws_message;

/* The process at the other end of a connected socket (SO_PEERCRED: the
   one that called listen) and its uid. */
int ws_peer(int sock, pid_t *pid, uid_t *uid);

/* Connect to the Unix socket at path; -1 with errno on failure. */
int ws_connect(const char *path);

/* Send one message; fds (nfds of them, may be 0) ride on its header. */
int ws_send(int sock, const char *tag, const void *data, uint32_t len,
            const int *fds, int nfds);

/* Receive one message into m.  0 on success, -1 on EOF or error (errno
   0 for a clean EOF).  Retries on EINTR so that signal forwarding does
   not cut a message. */
int ws_receive(int sock, ws_message *m);

/* The RUN payload for this process: malloc'ed, length in *len. */
char *ws_run_payload(char **argv, int argc, char **envp, const int *extra,
                     int nextra, size_t *len);

#endif /* WS_PROTOCOL_H */
