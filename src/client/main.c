/* warmstart-exec: launch a Python command through its warm server.

     warmstart-exec [--preload MODULES] [--explain] -- python [options]
                    (-m module | -c code | script) [args...]

   Finds the server for this exact command (see command.h), hands it the
   command line, environment, cwd, umask, resource limits and fds 0-2, and
   then behaves as the program: signals are relayed, and the client exits
   with the program's status.  Whenever no server can serve, it runs the
   command directly (execve), so the result is the same, only slower; the
   first such run also records what the program imports and starts a
   server for the next launch.  No Python runs in this process. */
#define _GNU_SOURCE
#include "checksum.h"
#include "command.h"
#include "privdir.h"
#include "procutil.h"
#include "protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* A server that is being started holds base.lock; one that refused to
   start (its preload started threads, say) leaves base.refused.  Both are
   honoured for a while only, so that a crash cannot disable a command. */
#define LOCK_SECONDS 60
#define REFUSED_SECONDS 3600

static const char *preload;
static int server_dirfd = -1;          /* the server directory (privdir.h) */
static char key[17];            /* this command's files: <key>.sock, ... */
static int fds[WS_MAX_FDS] = {0, 1, 2};  /* what the program is handed */
static int nfds;

static void
usage(void)
{
    fprintf(stderr,
            "usage: warmstart-exec [--preload MODULES] [--explain] -- "
            "python [options] (-m module | -c code | script) [args...]\n");
    exit(2);
}

/* Does <key><suffix> exist in the server directory, younger than that? */
static int
younger_than(const char *suffix, int seconds)
{
    char name[64];
    struct stat st;

    snprintf(name, sizeof name, "%s%s", key, suffix);
    return fstatat(server_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
           && time(NULL) - st.st_mtime < seconds;
}

/* Run directly; if we may start a server, ask the run to start one. */
static void
run_directly(const ws_command *cmd, const char *base, int start_server)
{
    char lock[64], serve[PATH_MAX + 32], pre[8192];
    const char *extra = NULL, *extra2 = NULL;

    if (start_server && base) {
        snprintf(lock, sizeof lock, "%s.lock", key);
        if (!younger_than(".lock", LOCK_SECONDS))
            unlinkat(server_dirfd, lock, 0);
        int fd = openat(server_dirfd, lock, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC
                                     | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            close(fd);
            snprintf(serve, sizeof serve, "WARMSTART_SERVE=%s", base);
            extra = serve;
            if (preload && (size_t)snprintf(pre, sizeof pre,
                                            "WARMSTART_PRELOAD=%s", preload)
                               < sizeof pre)
                extra2 = pre;
        }
    }
    ws_exec_direct(cmd->argv, cmd->exe, extra, extra2);
    exit(127);
}

/* Talk to a connected server.  Returns only if nothing has run and the
   command should run directly; *stale is set when the server retired. */
static void
launch(int sock, const char *payload, size_t len, int *stale)
{
    ws_message m;
    pid_t server;
    uid_t uid;
    int rc;

    /* Nothing of ours goes to a peer that is not our own server: the
       directory is private, so another user's socket there would mean
       an attack (or a directory that changed hands). */
    if (ws_peer(sock, &server, &uid) < 0 || uid != getuid()) {
        fprintf(stderr, "warmstart-exec: the server socket %s.sock is not "
                "this user's; running directly\n", key);
        return;
    }
    ws_hold_signals();
    rc = ws_send(sock, "RUN ", payload, (uint32_t)len, fds, nfds);
    if (rc < 0 || ws_receive(sock, &m) < 0)
        goto not_run;
    if (strcmp(m.tag, "NOPE") == 0) {
        *stale = m.len >= 5 && memcmp(m.data, "stale", 5) == 0;
        if (getenv("WARMSTART_VERBOSE"))
            fprintf(stderr, "warmstart-exec: not served: %.*s\n",
                    (int)m.len, m.data);
        goto not_run;
    }
    if (strcmp(m.tag, "PID ") != 0 || m.len != 4)
        goto not_run;
    {
        uint32_t pid;

        memcpy(&pid, m.data, 4);
        /* The program is a child of the server; any other pid (1, say,
           which would make a relayed Ctrl-C signal every process) is
           not from a warm server.  A program that has already ended and
           been reaped has no parent to show: the EXIT follows. */
        pid_t parent = pid > 1 && pid <= INT32_MAX
                       ? ws_parent_of((pid_t)pid) : -1;
        if (parent != server && parent != 0) {
            fprintf(stderr, "warmstart-exec: the server named pid %u, "
                    "not its child; running directly\n", (unsigned)pid);
            goto not_run;
        }
        ws_forward_signals((pid_t)pid);
        ws_release_signals();
        if (getenv("WARMSTART_VERBOSE"))
            fprintf(stderr, "warmstart-exec: served: pid %u of server %ld "
                    "(%s)\n", (unsigned)pid, (long)server, key);
    }
    /* From here on the program runs: never run it a second time. */
    for (;;) {
        if (ws_receive(sock, &m) < 0) {
            fprintf(stderr, "warmstart-exec: lost contact with the program's "
                    "server; its exit status is unknown\n");
            ws_exit_like(WS_EXITED, 255);
        }
        if (strcmp(m.tag, "EXIT") == 0 && m.len == 8) {
            uint32_t how[2];

            memcpy(how, m.data, 8);
            ws_exit_like(how[0], how[1]);
        }
    }

not_run:
    ws_release_signals();
}

int
main(int argc, char **argv)
{
    ws_command cmd;
    const char *why = NULL;
    char dir[PATH_MAX], base[PATH_MAX + 32], path[PATH_MAX + 48];
    char name[64];
    const char *unsafe = NULL;
    char *material, *payload;
    size_t len;
    int i, explain = 0, sock, stale = 0, fd;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        else if (strcmp(argv[i], "--preload") == 0 && i + 1 < argc)
            preload = argv[++i];
        else if (strcmp(argv[i], "--explain") == 0)
            explain = 1;
        else if (argv[i][0] == '-')
            usage();
        else
            break;
    }
    if (i >= argc)
        usage();
    argv += i;
    argc -= i;

    if (ws_command_parse(&cmd, argc, argv, &why) < 0) {
        if (explain) {
            printf("direct: %s\n", why);
            return 0;
        }
        if (cmd.exe[0] == '\0')
            snprintf(cmd.exe, sizeof cmd.exe, "%s", argv[0]);
        run_directly(&cmd, NULL, 0);
    }
    /* A server is handed fds 0-2 (and those above); a closed one would
       be a surprise. */
    for (fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0) {
            if (explain) {
                printf("direct: descriptor %d is closed\n", fd);
                return 0;
            }
            run_directly(&cmd, NULL, 0);
        }
    /* Before this process opens anything of its own. */
    nfds = ws_extra_fds(fds + 3, WS_MAX_FDS - 3);
    if (nfds < 0) {
        if (explain) {
            printf("direct: more than %d descriptors open\n", WS_MAX_FDS);
            return 0;
        }
        run_directly(&cmd, NULL, 0);
    }
    nfds += 3;
    server_dirfd = ws_server_dir(dir, sizeof dir, &unsafe);
    if (server_dirfd < 0) {
        if (explain) {
            printf("direct: no private server directory: %s\n", unsafe);
            return 0;
        }
        fprintf(stderr, "warmstart-exec: no private server directory (%s); "
                "running directly\n", unsafe);
        run_directly(&cmd, NULL, 0);
    }
    material = ws_command_key_material(&cmd, environ, &len);
    if (material == NULL)
        run_directly(&cmd, NULL, 0);
    snprintf(key, sizeof key, "%016llx",
             (unsigned long long)ws_checksum(material, len));
    snprintf(base, sizeof base, "%s/%s", dir, key);
    if (explain) {
        for (size_t k = 0; k < len; k++)
            putchar(material[k] ? material[k] : '\n');
        printf("server: %s\n", base);
        return 0;
    }
    free(material);

    /* The request is made before connecting, so that it follows the
       connection at once: the server reads it as it accepts. */
    payload = ws_run_payload(cmd.argv, cmd.argc, environ, fds + 3, nfds - 3,
                             &len);
    snprintf(name, sizeof name, "%s.sock", key);
    sock = payload == NULL
           || ws_dir_address(path, sizeof path, server_dirfd, name) < 0
           ? -1 : ws_connect(path);
    if (sock >= 0) {
        launch(sock, payload, len, &stale);
        close(sock);
        run_directly(&cmd, base, stale);
    }
    run_directly(&cmd, base, !younger_than(".refused", REFUSED_SECONDS));
    return 127;
}
