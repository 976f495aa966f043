/* The start-up hook's fast path: activate an image without importing.
 *
 * 00-warmstart.pth loads this extension straight from its own directory
 * (no search of sys.path) and calls boot().  When the only request is
 * WARMSTART_IMAGE, boot() opens the image and puts a PendingFinder on
 * sys.meta_path, right before PathFinder.  The PendingFinder answers None, from the image's own
 * index, for every module the image does not hold; on the first one it
 * holds, it imports warmstart.importer, whose _take_over() puts the real
 * ImageFinder in its place, and hands the request on.  A program that
 * imports nothing from the image pays for one dlopen and one open, not
 * for the Python half of the import tier (python -c pass with an unused
 * image: 0.6 ms over stock before, 0.3-0.4 ms with this path).
 *
 *   boot() -> True: handled here.  False: the caller runs _boot.main(),
 *             the start-up dispatcher, which handles every other variable
 *             and reports a bad image.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>

#include "boot.h"
#include "image.h"

#if WS_SUPPORTED

typedef struct {
    PyObject_HEAD
    PyObject *image;
    PyObject *finder;       /* the ImageFinder, once taken over */
    int state;
} PendingObject;

enum { PENDING, TAKING_OVER, DONE };

static PyObject *
delegate(PendingObject *self, PyObject *fullname, PyObject *path,
         PyObject *target)
{
    return PyObject_CallMethod(self->finder, "find_spec", "OOO", fullname,
                               path, target);
}

/* Import warmstart.importer and let it replace us; 0, or -1 with an
   exception set. */
static int
take_over(PendingObject *self)
{
    PyObject *importer = PyImport_ImportModule("warmstart.importer");
    if (importer == NULL) {
        return -1;
    }
    PyObject *finder = PyObject_CallMethod(importer, "_take_over", "OO",
                                           (PyObject *)self, self->image);
    Py_DECREF(importer);
    if (finder == NULL) {
        return -1;
    }
    if (finder != Py_None) {
        self->finder = finder;
    }
    else {
        Py_DECREF(finder);
    }
    return 0;
}

static PyObject *
Pending_find_spec(PendingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fullname", "path", "target", NULL};
    PyObject *fullname, *path = Py_None, *target = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|OO:find_spec", kwlist,
                                     &fullname, &path, &target)) {
        return NULL;
    }
    if (self->finder != NULL) {
        return delegate(self, fullname, path, target);
    }
    if (self->state != PENDING || self->image == NULL) {
        Py_RETURN_NONE;     /* taking over (its own imports), or given up */
    }
    ws_image *img = ws_image_of(self->image);
    Py_ssize_t len;
    const char *name = PyUnicode_AsUTF8AndSize(fullname, &len);
    if (img == NULL || name == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (ws_image_find(img, name, len) < 0) {
        Py_RETURN_NONE;
    }
    self->state = TAKING_OVER;
    int r = take_over(self);
    self->state = DONE;
    if (r < 0) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;        /* KeyboardInterrupt and the like */
        }
        /* The Python half is broken (a damaged installation): the program
           still imports normally.  One line, as importer.warn gives. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PySys_FormatStderr("warmstart: cannot serve imports from the image: "
                           "%R (importing normally)\n", value);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        Py_RETURN_NONE;
    }
    if (self->finder == NULL) {
        Py_RETURN_NONE;
    }
    return delegate(self, fullname, path, target);
}

static PyObject *
Pending_invalidate_caches(PendingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->finder != NULL) {
        return PyObject_CallMethod(self->finder, "invalidate_caches", NULL);
    }
    Py_RETURN_NONE;
}

static int
Pending_init(PendingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"image", NULL};
    PyObject *image;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:PendingFinder", kwlist,
                                     &image)) {
        return -1;
    }
    if (ws_image_of(image) == NULL) {
        PyErr_SetString(PyExc_TypeError, "image must be an open Image");
        return -1;
    }
    Py_XSETREF(self->image, Py_NewRef(image));
    Py_CLEAR(self->finder);
    self->state = PENDING;
    return 0;
}

static PyObject *
Pending_repr(PendingObject *self)
{
    if (self->image == NULL) {
        return PyUnicode_FromString("<warmstart.PendingFinder>");
    }
    PyObject *path = PyObject_GetAttrString(self->image, "path");
    if (path == NULL) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<warmstart.PendingFinder %R>", path);
    Py_DECREF(path);
    return r;
}

static int
Pending_traverse(PendingObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->image);
    Py_VISIT(self->finder);
    return 0;
}

static int
Pending_clear(PendingObject *self)
{
    Py_CLEAR(self->image);
    Py_CLEAR(self->finder);
    return 0;
}

static void
Pending_dealloc(PendingObject *self)
{
    PyObject_GC_UnTrack(self);
    Pending_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Pending_methods[] = {
    {"find_spec", (PyCFunction)(void (*)(void))Pending_find_spec,
     METH_VARARGS | METH_KEYWORDS,
     "None for modules the image lacks; the first one it holds activates "
     "the ImageFinder, which answers this and every later request"},
    {"invalidate_caches", (PyCFunction)Pending_invalidate_caches,
     METH_NOARGS, NULL},
    {NULL}
};

static PyObject *
Pending_get_image(PendingObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->image ? self->image : Py_None);
}

static PyObject *
Pending_get_finder(PendingObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->finder ? self->finder : Py_None);
}

static PyGetSetDef Pending_getset[] = {
    {"image", (getter)Pending_get_image, NULL, "the open Image", NULL},
    {"finder", (getter)Pending_get_finder, NULL,
     "the ImageFinder that took over, or None", NULL},
    {NULL}
};

static PyTypeObject PendingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "warmstart._image.PendingFinder",
    .tp_basicsize = sizeof(PendingObject),
    .tp_dealloc = (destructor)Pending_dealloc,
    .tp_repr = (reprfunc)Pending_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "PendingFinder(image): an ImageFinder's stand-in until the "
              "first import the image can serve (boot.c)",
    .tp_traverse = (traverseproc)Pending_traverse,
    .tp_clear = (inquiry)Pending_clear,
    .tp_methods = Pending_methods,
    .tp_getset = Pending_getset,
    .tp_init = (initproc)Pending_init,
    .tp_new = PyType_GenericNew,
};

/* Requests that need _boot.main(): recording, statistics, a server, the
   profiler.  The same list as _boot.NOT_IN_C (a test compares them). */
static const char *const python_boot_vars[] = {
    "WARMSTART_STATS", "WARMSTART_RECORD", "WARMSTART_SERVE",
    "WARMSTART_PROFILE", NULL,
};

/* Where PathFinder is on meta_path (its length if it is not there); -1
   with an exception set on failure. */
static Py_ssize_t
path_finder_index(PyObject *meta_path)
{
    PyObject *ext = PyImport_ImportModule("_frozen_importlib_external");
    PyObject *pf = ext ? PyObject_GetAttrString(ext, "PathFinder") : NULL;
    Py_XDECREF(ext);
    if (pf == NULL) {
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(meta_path), i = 0;
    while (i < n && PyList_GET_ITEM(meta_path, i) != pf) {
        i++;
    }
    Py_DECREF(pf);
    return i;
}

static int
boot_here(PyObject *module)
{
    const char *path = getenv("WARMSTART_IMAGE");
    if (path == NULL || path[0] == '\0'
        || PyInterpreterState_Get() != PyInterpreterState_Main()) {
        return 0;
    }
    for (int k = 0; python_boot_vars[k]; k++) {
        const char *v = getenv(python_boot_vars[k]);
        if (v != NULL && v[0] != '\0') {
            return 0;
        }
    }
    PyObject *image_type = PyObject_GetAttrString(module, "Image");
    PyObject *image = image_type ? PyObject_CallFunction(image_type, "s", path)
                                 : NULL;
    Py_XDECREF(image_type);
    if (image == NULL) {
        PyErr_Clear();          /* _boot.main() says why */
        return 0;
    }
    PyObject *pending = PyObject_CallOneArg((PyObject *)&PendingType, image);
    Py_DECREF(image);
    if (pending == NULL) {
        return -1;
    }
    PyObject *meta_path = PySys_GetObject("meta_path");     /* borrowed */
    int r = -1;
    if (meta_path != NULL && PyList_Check(meta_path)) {
        /* Right before PathFinder: every finder the normal import asks
           first is still asked first (importer.py, _place). */
        Py_ssize_t at = path_finder_index(meta_path);
        r = at < 0 ? -1 : PyList_Insert(meta_path, at, pending) < 0 ? -1 : 1;
    }
    else {
        PyErr_SetString(PyExc_RuntimeError, "sys.meta_path is not a list");
    }
    Py_DECREF(pending);
    return r;
}

static PyObject *
boot(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    /* site may read the .pth twice (a venv's lib64 is a link to lib): the
       first answer stands. */
    static int answer = -1;
    if (answer < 0) {
        int r = boot_here(module);
        if (r < 0) {
            PyErr_Clear();
            r = 0;
        }
        answer = r;
    }
    return PyBool_FromLong(answer);
}

#else

static PyObject *
boot(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_FALSE;
}

#endif

static PyMethodDef boot_methods[] = {
    {"boot", boot, METH_NOARGS,
     "boot() -> bool: the start-up hook's fast path (see boot.c)"},
    {NULL}
};

int
ws_boot_add(PyObject *module)
{
#if WS_SUPPORTED
    if (PyType_Ready(&PendingType) < 0
        || PyModule_AddObjectRef(module, "PendingFinder",
                                 (PyObject *)&PendingType) < 0) {
        return -1;
    }
#endif
    return PyModule_AddFunctions(module, boot_methods);
}
