/* Signals, exit status and direct execution for warmstart-exec. */
#define _GNU_SOURCE
#include "procutil.h"
#include "protocol.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static volatile pid_t program_pid;

static const int group_signals[] = {SIGINT, SIGQUIT, SIGHUP, SIGWINCH, 0};
static const int process_signals[] = {SIGUSR1, SIGUSR2, 0};

static void
forward_to_group(int sig)
{
    int saved = errno;

    if (program_pid > 0)
        kill(-program_pid, sig);
    errno = saved;
}

static void
forward_to_process(int sig)
{
    int saved = errno;

    if (program_pid > 0)
        kill(program_pid, sig);
    errno = saved;
}

static void
handle_tstp(int sig)
{
    int saved = errno;
    sigset_t set;

    (void)sig;
    if (program_pid > 0)
        kill(-program_pid, SIGTSTP);
    /* Stop ourselves the default way; execution resumes here on SIGCONT,
       whose handler wakes the program. */
    signal(SIGTSTP, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, SIGTSTP);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(SIGTSTP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGTSTP, handle_tstp);
    errno = saved;
}

/* The caller's disposition of each signal we relay, to be put back
   before an exec or our own death: a signal it ignores (nohup, a
   background job) stays ignored in the program, and is not relayed. */
static struct sigaction callers[65];
static char replaced[65];

static void
install(int sig, void (*handler)(int), int flags)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART | flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, &callers[sig]) < 0)
        return;
    replaced[sig] = 1;
    if (callers[sig].sa_handler == SIG_IGN) {
        sigaction(sig, &callers[sig], NULL);
        replaced[sig] = 0;
    }
}

void
ws_forward_signals(pid_t pid)
{
    int k;

    program_pid = pid;
    for (k = 0; group_signals[k]; k++)
        install(group_signals[k], forward_to_group, 0);
    /* SA_RESETHAND: a second SIGTERM ends a client whose server hangs. */
    install(SIGTERM, forward_to_process, SA_RESETHAND);
    for (k = 0; process_signals[k]; k++)
        install(process_signals[k], forward_to_process, 0);
    install(SIGCONT, forward_to_group, 0);
    install(SIGTSTP, handle_tstp, 0);
}

static sigset_t unheld;         /* the mask before ws_hold_signals */

void
ws_hold_signals(void)
{
    static const int others[] = {SIGTERM, SIGCONT, SIGTSTP, 0};
    sigset_t set;
    int k;

    sigemptyset(&set);
    for (k = 0; group_signals[k]; k++)
        sigaddset(&set, group_signals[k]);
    for (k = 0; process_signals[k]; k++)
        sigaddset(&set, process_signals[k]);
    for (k = 0; others[k]; k++)
        sigaddset(&set, others[k]);
    sigprocmask(SIG_BLOCK, &set, &unheld);
}

void
ws_release_signals(void)
{
    sigprocmask(SIG_SETMASK, &unheld, NULL);
}

void
ws_restore_signals(void)
{
    int sig;

    program_pid = 0;
    for (sig = 1; sig < 65; sig++) {
        if (replaced[sig]) {
            sigaction(sig, &callers[sig], NULL);
            replaced[sig] = 0;
        }
    }
}

void
ws_exit_like(unsigned kind, unsigned value)
{
    if (kind == WS_SIGNALED && value > 0 && value < 65) {
        struct rlimit none = {0, 0};
        sigset_t set;

        ws_restore_signals();
        signal((int)value, SIG_DFL);
        setrlimit(RLIMIT_CORE, &none);
        sigemptyset(&set);
        sigaddset(&set, (int)value);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        kill(getpid(), (int)value);
        /* A signal whose default is to continue or be ignored. */
        _exit(128 + (int)value);
    }
    exit(kind == WS_EXITED ? (int)(value & 0xff) : 255);
}

static int
by_number(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

int
ws_extra_fds(int *out, int max)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0, own;

    if (d == NULL)
        return 0;
    own = dirfd(d);
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);

        if (*end != '\0' || end == e->d_name || fd <= 2 || fd == own)
            continue;
        if (n == max) {
            n = -1;
            break;
        }
        out[n++] = (int)fd;
    }
    closedir(d);
    if (n > 0)
        qsort(out, (size_t)n, sizeof *out, by_number);
    return n;
}

pid_t
ws_parent_of(pid_t pid)
{
    char path[64], buf[1024];
    const char *p;
    ssize_t n;
    long ppid;
    int fd;

    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;           /* it exited between the open and the read */
    buf[n] = '\0';
    /* "pid (comm) state ppid ...": comm may hold anything but the last
       ')' ends it. */
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 1, " %*c %ld", &ppid) != 1)
        return 0;
    return (pid_t)ppid;
}

void
ws_exec_direct(char **argv, const char *exe, const char *extra_env,
               const char *extra_env2)
{
    extern char **environ;
    char **env = environ;
    size_t n = 0, k = 0;

    ws_restore_signals();
    if (extra_env) {
        while (environ[n])
            n++;
        env = malloc((n + 3) * sizeof *env);
        if (env == NULL) {
            env = environ;
        }
        else {
            for (k = 0; k < n; k++)
                env[k] = environ[k];
            env[k++] = (char *)extra_env;
            if (extra_env2)
                env[k++] = (char *)extra_env2;
            env[k] = NULL;
        }
    }
    execve(exe, argv, env);
    fprintf(stderr, "warmstart-exec: cannot run %s: %s\n", exe,
            strerror(errno));
}
