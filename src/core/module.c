/* warmstart._image, the C core: one extension module for every C part of
 * the Python side, each tier adding its own entry points.
 *
 *   tier 1, src/image/    Image, write_image, fingerprint, ImageError,
 *                         SUPPORTED (ws_image_add)
 *   tier 2, src/importer/ FindCore, GetCodeHook, boot() and PendingFinder
 *   tier 3, src/server/   identity(), settable(), prefault(), written()
 *
 * and, here, what belongs to no tier: _checksum (for tests, which build
 * consistent but malformed images) and _is_main_interpreter.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "image.h"
#include "checksum.h"
#include "find.h"
#include "boot.h"
#include "get_code_hook.h"
#include "identity.h"
#include "pages.h"

static PyObject *
checksum(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    uint64_t h = ws_checksum(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(h);
}

static PyObject *
is_main_interpreter(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(PyInterpreterState_Get() == PyInterpreterState_Main());
}

static PyMethodDef core_methods[] = {
    {"_is_main_interpreter", is_main_interpreter, METH_NOARGS,
     "whether this is the main interpreter (images serve only that one)"},
    {"_checksum", checksum, METH_O, "checksum used by the image format"},
    {NULL}
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "warmstart._image",
    .m_doc = "warmstart's C core: code images (compiled modules in the "
             "interpreter's own memory layout, mapped instead of "
             "unmarshalled), the import tier's fast paths, and the warm "
             "server's process helpers.",
    .m_size = -1,
    .m_methods = core_methods,
};

PyMODINIT_FUNC
PyInit__image(void)
{
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL) {
        return NULL;
    }
    /* Tier 1 first: the others use its ImageError. */
    if (ws_image_add(m) < 0 || ws_get_code_hook_add(m) < 0
        || ws_find_core_add(m) < 0 || ws_boot_add(m) < 0
        || ws_identity_add(m) < 0 || ws_pages_add(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
