/* Messages between warmstart-exec and a warm server; see protocol.h. */
#define _GNU_SOURCE
#include "protocol.h"
#include "fields.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int
ws_peer(int sock, pid_t *pid, uid_t *uid)
{
    struct ucred cred;
    socklen_t n = sizeof cred;

    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &n) < 0
        || n != sizeof cred)
        return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    return 0;
}

int
ws_connect(const char *path)
{
    struct sockaddr_un addr;
    int fd;

    if (strlen(path) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int saved = errno;

        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int
ws_send(int sock, const char *tag, const void *data, uint32_t len,
        const int *fds, int nfds)
{
    char header[8];
    struct iovec iov = {header, sizeof header};
    struct msghdr msg;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * WS_MAX_FDS)];
    } control;
    ssize_t w;

    if (nfds < 0 || nfds > WS_MAX_FDS)
        return -1;
    memcpy(header, tag, 4);
    memcpy(header + 4, &len, 4);
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        struct cmsghdr *c;

        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    do {
        w = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w < 0)
        return -1;
    if (w < (ssize_t)sizeof header
        && write_all(sock, header + w, sizeof header - (size_t)w) < 0)
        return -1;
    return write_all(sock, data, len);
}

static int
read_all(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = 0;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int
ws_receive(int sock, ws_message *m)
{
    char header[8], skip[512];
    uint32_t rest;

    if (read_all(sock, header, sizeof header) < 0)
        return -1;
    memcpy(m->tag, header, 4);
    m->tag[4] = '\0';
    memcpy(&m->len, header + 4, 4);
    if (m->len > WS_MAX_MESSAGE) {
        errno = EPROTO;
        return -1;
    }
    rest = m->len;
    if (read_all(sock, m->data, rest < sizeof m->data ? rest
                                                       : sizeof m->data) < 0)
        return -1;
    rest = rest < sizeof m->data ? 0 : rest - (uint32_t)sizeof m->data;
    while (rest > 0) {
        uint32_t k = rest < sizeof skip ? rest : (uint32_t)sizeof skip;

        if (read_all(sock, skip, k) < 0)
            return -1;
        rest -= k;
    }
    if (m->len > sizeof m->data)
        m->len = sizeof m->data;
    return 0;
}

/* SigIgn and SigBlk of /proc/self/status; -1 if they cannot be read. */
static int
proc_status_masks(unsigned long long *ign, unsigned long long *blk)
{
    char buf[4096];
    const char *p;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC), found = 0;
    ssize_t n;

    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if ((p = strstr(buf, "\nSigBlk:\t")) != NULL
        && sscanf(p + 9, "%llx", blk) == 1)
        found++;
    if ((p = strstr(buf, "\nSigIgn:\t")) != NULL
        && sscanf(p + 9, "%llx", ign) == 1)
        found++;
    return found == 2 ? 0 : -1;
}

char *
ws_run_payload(char **argv, int argc, char **envp, const int *extra,
               int nextra, size_t *len)
{
    ws_fields b = {NULL, 0, 0};
    char num[64], cwd[4096];
    mode_t mask = umask(0);
    int i, err = 0, envc = 0;

    umask(mask);
    if (getcwd(cwd, sizeof cwd) == NULL)
        return NULL;
    err |= ws_fields_put(&b, "", WS_PROTOCOL_VERSION);
    snprintf(num, sizeof num, "%o", (unsigned)mask);
    err |= ws_fields_put(&b, "", num);
    err |= ws_fields_put(&b, "", cwd);
    snprintf(num, sizeof num, "%d", argc);
    err |= ws_fields_put(&b, "", num);
    for (i = 0; i < argc; i++)
        err |= ws_fields_put(&b, "", argv[i]);
    while (envp[envc])
        envc++;
    snprintf(num, sizeof num, "%d", envc);
    err |= ws_fields_put(&b, "", num);
    for (i = 0; i < envc; i++)
        err |= ws_fields_put(&b, "", envp[i]);
    snprintf(num, sizeof num, "%d", (int)RLIM_NLIMITS);
    err |= ws_fields_put(&b, "", num);
    for (i = 0; i < (int)RLIM_NLIMITS; i++) {
        struct rlimit rl;

        if (getrlimit(i, &rl) < 0)
            rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
        snprintf(num, sizeof num, "%d %llu %llu", i,
                 (unsigned long long)rl.rlim_cur,
                 (unsigned long long)rl.rlim_max);
        err |= ws_fields_put(&b, "", num);
    }
    {
        /* Signal dispositions a direct run would inherit: which are
           ignored (nohup, a background job of a non-interactive shell)
           and which are blocked; bit n-1 for signal n.  The kernel's
           own masks, from one read (a sigaction call per signal costs
           more than the whole rest of the request). */
        unsigned long long ign = 0, blk = 0;

        if (proc_status_masks(&ign, &blk) < 0) {
            struct sigaction sa;
            sigset_t now;
            int sig;

            sigprocmask(SIG_BLOCK, NULL, &now);
            for (sig = 1; sig <= 64; sig++) {
                if (sigaction(sig, NULL, &sa) == 0
                    && sa.sa_handler == SIG_IGN)
                    ign |= 1ull << (sig - 1);
                if (sigismember(&now, sig) == 1)
                    blk |= 1ull << (sig - 1);
            }
        }
        snprintf(num, sizeof num, "%llx %llx", ign, blk);
        err |= ws_fields_put(&b, "", num);
    }
    {
        char list[WS_MAX_FDS * 12 + 1];
        size_t n = 0;

        list[0] = '\0';
        for (i = 0; i < nextra; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%d",
                                  i ? " " : "", extra[i]);
        err |= ws_fields_put(&b, "", list);
    }
    if (err || b.len > WS_MAX_MESSAGE) {
        free(b.data);
        return NULL;
    }
    *len = b.len;
    return b.data;
}
