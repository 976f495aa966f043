/* Learned prefaulting: the pages a launch writes are copied before the
 * next launch comes, not while it waits.
 *
 * A worker shares every page with the server it was forked from; the
 * first write to one costs a copy-on-write fault.  A served `-c pass`
 * takes about 500 of them, most of its time in a virtual machine.  The
 * same launch writes mostly the same pages each time (the same objects'
 * reference counts, the same allocator pools), so:
 *
 *   written(buf)   in a worker, after its launch: the runs of pages of
 *                  its private writable mappings that are now its own
 *                  (present and exclusively mapped: /proc/self/pagemap
 *                  bits 63 and 56), written into buf;
 *   prefault(buf)  in a spare, before it waits: those runs, each clipped
 *                  to a private writable mapping of its own, copied now
 *                  with madvise(MADV_POPULATE_WRITE) (Linux 5.14; which
 *                  changes no byte).
 *
 * buf is a shared anonymous mapping the server makes: a launched program
 * can write into it, so prefault trusts nothing in it -- it only decides
 * which of the spare's own private pages are copied ahead, at most
 * WS_PREFAULT_MAX_PAGES of them.
 *
 * Layout of buf: uint32 magic, uint32 count, then count pairs of uint64
 * (first page address, number of pages). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pages.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PAGES_MAGIC 0x77737066u        /* "fpsw" */
#define PM_PRESENT (1ULL << 63)
#define PM_EXCLUSIVE (1ULL << 56)
#define MAX_MAPPINGS 4096

typedef struct {
    uint64_t start, end;
} mapping;

/* The private writable mappings of this process, in address order. */
static int
private_writable(mapping *out, int cap)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (f == NULL) {
        return -1;
    }
    char line[512];
    int n = 0;
    while (n < cap && fgets(line, sizeof line, f)) {
        unsigned long long lo, hi;
        char perms[5];
        if (sscanf(line, "%llx-%llx %4s", &lo, &hi, perms) == 3
            && perms[0] == 'r' && perms[1] == 'w' && perms[3] == 'p'
            && lo < hi) {
            out[n].start = lo;
            out[n].end = hi;
            n++;
        }
        /* A line longer than the buffer (a long path): skip its rest. */
        while (strchr(line, '\n') == NULL && fgets(line, sizeof line, f)) {
        }
    }
    fclose(f);
    return n;
}

static int
get_buffer(PyObject *arg, Py_buffer *view, uint64_t *cap_pairs)
{
    if (PyObject_GetBuffer(arg, view, PyBUF_WRITABLE) < 0) {
        return -1;
    }
    if (view->len < 8) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "buffer too small");
        return -1;
    }
    *cap_pairs = ((uint64_t)view->len - 8) / 16;
    return 0;
}

/* Append one run of pages to buf, while it and the page budget last. */
static void
add_run(unsigned char *base, uint64_t cap, uint32_t *count, uint64_t *total,
        uint64_t start, uint64_t len)
{
    if (len == 0 || *count >= cap || *total + len > WS_PREFAULT_MAX_PAGES) {
        return;
    }
    uint64_t pair[2] = {start, len};
    memcpy(base + 8 + (size_t)*count * 16, pair, 16);
    (*count)++;
    *total += len;
}

static PyObject *
written(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    uint64_t cap;
    if (get_buffer(arg, &view, &cap) < 0) {
        return NULL;
    }
    static mapping maps[MAX_MAPPINGS];
    long page = sysconf(_SC_PAGESIZE);
    int nmaps = private_writable(maps, MAX_MAPPINGS);
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    uint32_t count = 0;
    uint64_t total = 0;
    unsigned char *base = view.buf;
    uint64_t entries[512];

    for (int i = 0; fd >= 0 && i < nmaps && count < cap; i++) {
        uint64_t run_start = 0, run_len = 0;
        for (uint64_t addr = maps[i].start; addr < maps[i].end;) {
            uint64_t want = (maps[i].end - addr) / (uint64_t)page;
            if (want > 512) {
                want = 512;
            }
            ssize_t got = pread(fd, entries, want * 8,
                                (off_t)(addr / (uint64_t)page * 8));
            if (got <= 0) {
                break;
            }
            uint64_t n = (uint64_t)got / 8;
            for (uint64_t k = 0; k < n; k++, addr += (uint64_t)page) {
                int own = (entries[k] & (PM_PRESENT | PM_EXCLUSIVE))
                          == (PM_PRESENT | PM_EXCLUSIVE);
                if (own && run_len > 0 && run_start + run_len * page == addr) {
                    run_len++;
                    continue;
                }
                add_run(base, cap, &count, &total, run_start, run_len);
                run_len = 0;
                if (own) {
                    run_start = addr;
                    run_len = 1;
                }
            }
        }
        add_run(base, cap, &count, &total, run_start, run_len);
    }
    if (fd >= 0) {
        close(fd);
    }
    uint32_t head[2] = {PAGES_MAGIC, count};
    memcpy(base, head, 8);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(total);
}

static PyObject *
prefault(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    uint64_t cap;
    if (get_buffer(arg, &view, &cap) < 0) {
        return NULL;
    }
    static mapping maps[MAX_MAPPINGS];
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint32_t head[2];
    memcpy(head, view.buf, 8);
    uint64_t count = head[0] == PAGES_MAGIC ? head[1] : 0;
    if (count > cap) {
        count = cap;
    }
    int nmaps = count ? private_writable(maps, MAX_MAPPINGS) : 0;
    uint64_t done = 0;
    int m = 0;
    for (uint64_t i = 0; i < count && done < WS_PREFAULT_MAX_PAGES; i++) {
        uint64_t pair[2];
        memcpy(pair, (unsigned char *)view.buf + 8 + i * 16, 16);
        uint64_t start = pair[0], len = pair[1];
        if (start % page || len == 0 || len > WS_PREFAULT_MAX_PAGES
            || start > UINT64_MAX - len * page) {
            continue;
        }
        uint64_t end = start + len * page;
        /* Runs come in address order from written(); others are
           looked up from the first mapping again. */
        if (m >= nmaps || maps[m].start > start) {
            m = 0;
        }
        for (; m < nmaps && maps[m].end <= start; m++) {
        }
        for (int j = m; j < nmaps && maps[j].start < end; j++) {
            uint64_t lo = start > maps[j].start ? start : maps[j].start;
            uint64_t hi = end < maps[j].end ? end : maps[j].end;
            if (hi - lo > (WS_PREFAULT_MAX_PAGES - done) * page) {
                hi = lo + (WS_PREFAULT_MAX_PAGES - done) * page;
            }
            if (lo >= hi) {
                continue;
            }
            if (madvise((void *)(uintptr_t)lo, hi - lo,
                        MADV_POPULATE_WRITE) < 0
                && (errno == EINVAL || errno == ENOSYS)) {
                count = 0;          /* a kernel without it: nothing to do */
                break;
            }
            done += (hi - lo) / page;
        }
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(done);
}

static PyMethodDef pages_methods[] = {
    {"written", written, METH_O,
     "written(buffer) -> pages: record the pages this process has made "
     "its own (pages.c)"},
    {"prefault", prefault, METH_O,
     "prefault(buffer) -> pages: make the recorded pages this process's "
     "own now (pages.c)"},
    {NULL}
};

int
ws_pages_add(PyObject *module)
{
    return PyModule_AddFunctions(module, pages_methods);
}
