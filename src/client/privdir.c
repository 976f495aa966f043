/* The private-directory walk of the client; see privdir.h. */
#define _GNU_SOURCE
#include "privdir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

static char reason[PATH_MAX + 96];

static int
refuse(const char **why, const char *path, const char *what)
{
    snprintf(reason, sizeof reason, "%s %s", path, what);
    *why = reason;
    return -1;
}

/* realpath, allowing the last component not to exist yet. */
static int
resolve(const char *path, char *out)
{
    char parent[PATH_MAX], real[PATH_MAX];
    const char *slash;

    if (path[0] != '/')
        return -1;
    if (realpath(path, out) != NULL)
        return 0;
    if (errno != ENOENT)
        return -1;
    slash = strrchr(path, '/');
    if (slash[1] == '\0' || strcmp(slash + 1, ".") == 0
        || strcmp(slash + 1, "..") == 0
        || (size_t)(slash - path) >= sizeof parent)
        return -1;
    memcpy(parent, path, (size_t)(slash - path));
    parent[slash - path] = '\0';
    if (realpath(parent[0] ? parent : "/", real) == NULL)
        return -1;
    if (snprintf(out, PATH_MAX, "%s/%s", strcmp(real, "/") ? real : "",
                 slash + 1) >= PATH_MAX)
        return -1;
    return 0;
}

int
ws_private_dir_open(const char *path, int create, char *out, size_t size,
                    const char **why)
{
    char real[PATH_MAX], walked[PATH_MAX];
    char *name, *next;
    size_t done = 0;
    struct stat st;
    uid_t uid = getuid();
    int fd, nfd;

    if (resolve(path, real) < 0)
        return refuse(why, path, "cannot be resolved to an absolute path");
    if (strlen(real) >= size)
        return refuse(why, path, "is too long");
    strcpy(out, real);
    fd = open("/", DIR_FLAGS);
    if (fd < 0)
        return refuse(why, "/", "cannot be opened");
    walked[0] = '\0';
    for (name = real + 1; ; name = next + 1) {
        next = strchr(name, '/');
        if (next)
            *next = '\0';
        if (fstat(fd, &st) < 0)
            goto fail_io;
        /* Every directory on the way: nobody else may replace what is in it. */
        if (st.st_uid != 0 && st.st_uid != uid) {
            refuse(why, walked[0] ? walked : "/", "is owned by another user");
            goto fail;
        }
        if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
            refuse(why, walked[0] ? walked : "/",
                   "is writable by other users");
            goto fail;
        }
        if (*name == '\0')          /* path is "/" */
            break;
        done += (size_t)snprintf(walked + done, sizeof walked - done, "/%s",
                                 name);
        nfd = openat(fd, name, DIR_FLAGS);
        if (nfd < 0 && errno == ENOENT && create && next == NULL) {
            if (mkdirat(fd, name, 0700) < 0 && errno != EEXIST)
                goto fail_io;
            nfd = openat(fd, name, DIR_FLAGS);
        }
        if (nfd < 0) {
            refuse(why, walked, errno == ENOENT ? "does not exist"
                                 : "is not a directory (or is a symlink)");
            goto fail;
        }
        close(fd);
        fd = nfd;
        if (next == NULL)
            break;
    }
    if (fstat(fd, &st) < 0)
        goto fail_io;
    if (st.st_uid != uid) {
        refuse(why, walked, "is owned by another user");
        goto fail;
    }
    if (st.st_mode & 077) {
        refuse(why, walked, "is open to other users (its mode must be 0700)");
        goto fail;
    }
    return fd;

fail_io:
    refuse(why, walked[0] ? walked : "/", strerror(errno));
fail:
    close(fd);
    return -1;
}

int
ws_dir_address(char *out, size_t size, int dirfd, const char *name)
{
    int n = snprintf(out, size, "/proc/self/fd/%d/%s", dirfd, name);

    return n < 0 || (size_t)n >= size ? -1 : 0;
}
