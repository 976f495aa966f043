/* libFuzzer target for the image loader: open arbitrary bytes as an image
 * and materialise every module.  Each input must give a clean error or
 * correct objects; the sanitizers catch everything else.
 *
 * Built by fuzz/build.sh with the core compiled in (WS_FUZZING: no
 * interning, so that each image can be unmapped after use).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image.h"

PyMODINIT_FUNC PyInit__image(void);

static char path[64];
static int fd = -1;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    PyImport_AppendInittab("_image", PyInit__image);
    Py_InitializeEx(0);
    PyObject *m = PyImport_ImportModule("_image");
    PyObject *gc = PyImport_ImportModule("gc");
    /* Frozensets built from a fuzzed image point into it; no collection
       may visit them after the image is unmapped. */
    PyObject *r = gc ? PyObject_CallMethod(gc, "disable", NULL) : NULL;
    if (m == NULL || r == NULL) {
        PyErr_Print();
        abort();
    }
    Py_DECREF(r);
    Py_DECREF(gc);
    fd = memfd_create("ws-fuzz", 0);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
        abort();
    }
    ws_image img;
    if (ws_image_open(&img, path) < 0) {
        PyErr_Clear();
        return 0;
    }
    for (uint32_t i = 0; i < img.hdr.n_modules; i++) {
        PyObject *code = ws_image_get_code(&img, i);
        if (code == NULL) {
            PyErr_Clear();
            continue;
        }
        if (!PyCode_Check(code)) {
            abort();
        }
        /* Touch what a caller would: the names and constants. */
        PyObject *r = PyObject_Repr(((PyCodeObject *)code)->co_consts);
        Py_XDECREF(r);
        PyErr_Clear();
        Py_DECREF(code);
    }
    ws_image_release(&img);
    munmap(img.base, img.map_size);
    return 0;
}
