/* identity(pid): a process's credentials and confinement, read from
 * /proc, as one tuple that compares equal only for processes a launch may
 * be handed between.  In C because a launch pays for it: about 30 system
 * calls, which cost a Python implementation 0.2 ms in a freshly forked
 * worker and this one a fraction of that.
 *
 * The tuple, in the order of IDENTITY_FIELDS in confinement.py:
 *   the lines of /proc/PID/status naming uids, gids, groups, the five
 *   capability sets, NoNewPrivs and seccomp (bytes, in file order);
 *   the target of each link in /proc/PID/ns/ (bytes; "absent" where the
 *   kernel has no such namespace, None where it cannot be read);
 *   (st_dev, st_ino) of /proc/PID/root, or None;
 *   /proc/PID/attr/current (bytes), or the errno reading it gave. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "identity.h"

static const char *const status_keys[] = {
    "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:",
    "CapAmb:", "NoNewPrivs:", "Seccomp:", "Seccomp_filters:", NULL,
};

static const char *const namespaces[] = {
    "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time",
    "time_for_children", "user", "uts", NULL,
};

/* Read a small file into buf; its length, or -1 with errno set. */
static ssize_t
read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = read(fd, buf, size - 1);
    int saved = errno;
    close(fd);
    errno = saved;
    if (n >= 0) {
        buf[n] = '\0';
    }
    return n;
}

static PyObject *
status_lines(const char *base)
{
    char path[64], buf[8192], out[4096];
    size_t len = 0;

    snprintf(path, sizeof path, "%sstatus", base);
    if (read_small(path, buf, sizeof buf) < 0) {
        Py_RETURN_NONE;
    }
    for (char *line = buf; *line; ) {
        char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        for (int k = 0; status_keys[k]; k++) {
            size_t kl = strlen(status_keys[k]);
            if (n >= kl && memcmp(line, status_keys[k], kl) == 0
                && len + n + 1 < sizeof out) {
                memcpy(out + len, line, n);
                len += n;
                out[len++] = '\n';
                break;
            }
        }
        if (end == NULL) {
            break;
        }
        line = end + 1;
    }
    return PyBytes_FromStringAndSize(out, (Py_ssize_t)len);
}

static PyObject *
identity(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long pid = PyLong_AsLong(arg);
    if (pid == -1 && PyErr_Occurred()) {
        return NULL;
    }
    char base[48], path[96], buf[4096];
    snprintf(base, sizeof base, "/proc/%ld/", pid);
    Py_ssize_t n_ns = 0;
    while (namespaces[n_ns]) {
        n_ns++;
    }
    PyObject *t = PyTuple_New(1 + n_ns + 2);
    if (t == NULL) {
        return NULL;
    }
    PyObject *item = status_lines(base);
    if (item == NULL) {
        goto fail;
    }
    PyTuple_SET_ITEM(t, 0, item);
    for (Py_ssize_t k = 0; k < n_ns; k++) {
        snprintf(path, sizeof path, "%sns/%s", base, namespaces[k]);
        ssize_t n = readlink(path, buf, sizeof buf);
        if (n >= 0) {
            item = PyBytes_FromStringAndSize(buf, n);
        }
        else if (errno == ENOENT) {
            item = PyBytes_FromString("absent");
        }
        else {
            item = Py_NewRef(Py_None);
        }
        if (item == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(t, 1 + k, item);
    }
    struct stat st;
    snprintf(path, sizeof path, "%sroot", base);
    if (stat(path, &st) == 0) {
        item = Py_BuildValue("(KK)", (unsigned long long)st.st_dev,
                             (unsigned long long)st.st_ino);
    }
    else {
        item = Py_NewRef(Py_None);
    }
    if (item == NULL) {
        goto fail;
    }
    PyTuple_SET_ITEM(t, 1 + n_ns, item);
    snprintf(path, sizeof path, "%sattr/current", base);
    ssize_t n = read_small(path, buf, sizeof buf);
    if (n >= 0) {
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\0')) {
            n--;
        }
        item = PyBytes_FromStringAndSize(buf, n);
    }
    else {
        item = PyLong_FromLong(errno);
    }
    if (item == NULL) {
        goto fail;
    }
    PyTuple_SET_ITEM(t, 2 + n_ns, item);
    return t;

fail:
    Py_DECREF(t);
    return NULL;
}

static PyMethodDef identity_methods[] = {
    {"identity", identity, METH_O,
     "identity(pid) -> tuple: credentials and confinement (identity.c)"},
    {NULL}
};

int
ws_identity_add(PyObject *module)
{
    return PyModule_AddFunctions(module, identity_methods);
}
