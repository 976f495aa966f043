/* What the warm server reads of a client process before a launch, from
 * /proc, in C because a launch waits for it: about 30 system calls, which
 * cost a Python implementation 0.2 ms in a freshly forked process and
 * this one a fraction of that.  Everything is read relative to one
 * descriptor of /proc/PID, so that all of it is of one process: if the
 * pid dies and is reused meanwhile, the reads fail instead of describing
 * another process.
 *
 * identity(pid): what must be equal between client and server, as one
 * tuple, in the order of IDENTITY_FIELDS in confinement.py:
 *   the lines of /proc/PID/status naming uids, gids, groups, the five
 *   capability sets, NoNewPrivs and seccomp (bytes, in file order);
 *   the target of each link in /proc/PID/ns/ (bytes; "absent" where the
 *   kernel has no such namespace, None where it cannot be read);
 *   (st_dev, st_ino) of /proc/PID/root, or None;
 *   /proc/PID/attr/current (bytes), or the errno reading it gave; not
 *   read with attr false (where no LSM gives it, reading it of a new
 *   process costs a launch 60 us, for EINVAL), and EINVAL then.
 *
 * settable(pid): what a worker may take from the client by itself, as
 * (nice, policy, priority, cpus, ioprio, cgroup): the nice value, the
 * scheduling policy and its priority, the CPU affinity mask (bytes, as
 * sched_getaffinity fills it), the I/O priority (-1 if unknown) and
 * /proc/PID/cgroup (bytes, or the errno reading it gave). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

#define IOPRIO_WHO_PROCESS 1

/* /proc/PID, open; -1 with a Python exception set. */
static int
open_proc(PyObject *arg)
{
    long pid = PyLong_AsLong(arg);
    if (pid == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (pid <= 0) {
        PyErr_SetString(PyExc_ValueError, "pid must be positive");
        return -1;
    }
    char path[48];
    snprintf(path, sizeof path, "/proc/%ld", pid);
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    }
    return fd;
}

/* Read a small file of dir into buf; its length, or -1 with errno set. */
static ssize_t
read_small(int dir, const char *name, char *buf, size_t size)
{
    int fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
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
status_lines(int dir)
{
    char buf[8192], out[4096];
    size_t len = 0;

    if (read_small(dir, "status", buf, sizeof buf) < 0) {
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
identity_of(int dir, int attr)
{
    char path[64], buf[4096];
    Py_ssize_t n_ns = 0;
    while (namespaces[n_ns]) {
        n_ns++;
    }
    PyObject *t = PyTuple_New(1 + n_ns + 2);
    if (t == NULL) {
        return NULL;
    }
    PyObject *item = status_lines(dir);
    if (item == NULL) {
        goto fail;
    }
    PyTuple_SET_ITEM(t, 0, item);
    for (Py_ssize_t k = 0; k < n_ns; k++) {
        snprintf(path, sizeof path, "ns/%s", namespaces[k]);
        ssize_t n = readlinkat(dir, path, buf, sizeof buf);
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
    if (fstatat(dir, "root", &st, 0) == 0) {
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
    ssize_t n = attr ? read_small(dir, "attr/current", buf, sizeof buf) : -1;
    if (!attr) {
        item = PyLong_FromLong(EINVAL);
    }
    else if (n >= 0) {
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

static PyObject *
identity(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *arg;
    int attr = 1;
    if (!PyArg_ParseTuple(args, "O|p:identity", &arg, &attr)) {
        return NULL;
    }
    int dir = open_proc(arg);
    if (dir < 0) {
        return NULL;
    }
    PyObject *t = identity_of(dir, attr);
    close(dir);
    return t;
}

static PyObject *
settable(PyObject *Py_UNUSED(module), PyObject *arg)
{
    pid_t pid = (pid_t)PyLong_AsLong(arg);
    int dir = open_proc(arg);
    if (dir < 0) {
        return NULL;
    }
    /* The calls by pid come first; the look-up in /proc/PID after them
       fails if the process died meanwhile (and its pid may be another's),
       and then they are thrown away. */
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)pid);
    int failed = nice == -1 && errno != 0;
    int policy = sched_getscheduler(pid);
    struct sched_param param;
    cpu_set_t cpus;
    failed = failed || policy < 0 || sched_getparam(pid, &param) < 0
             || sched_getaffinity(pid, sizeof cpus, &cpus) < 0;
    long ioprio = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, pid);
    char buf[4096];
    ssize_t n = read_small(dir, "cgroup", buf, sizeof buf);
    int cgroup_errno = errno;
    struct stat st;
    failed = failed || fstatat(dir, "stat", &st, AT_SYMLINK_NOFOLLOW) < 0;
    close(dir);
    if (failed) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\0')) {
        n--;
    }
    PyObject *cgroup = n >= 0 ? PyBytes_FromStringAndSize(buf, n)
                              : PyLong_FromLong(cgroup_errno);
    if (cgroup == NULL) {
        return NULL;
    }
    return Py_BuildValue("(iiiy#lN)", nice, policy, param.sched_priority,
                         (const char *)&cpus, (Py_ssize_t)sizeof cpus,
                         ioprio < 0 ? -1L : ioprio, cgroup);
}

static PyMethodDef identity_methods[] = {
    {"identity", identity, METH_VARARGS,
     "identity(pid, attr=True) -> tuple: credentials and confinement "
     "(identity.c)"},
    {"settable", settable, METH_O,
     "settable(pid) -> (nice, policy, priority, cpus, ioprio, cgroup): "
     "what a process may set for itself (identity.c)"},
    {NULL}
};

int
ws_identity_add(PyObject *module)
{
    return PyModule_AddFunctions(module, identity_methods);
}
