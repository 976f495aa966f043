/* SourceFileLoader.get_code, as installed while an image is active.
 *
 * The import tier serves a module by handing out a plain SourceFileLoader
 * (so that type checks and loader equality are those of a normal import)
 * and registering it; this hook then gives the image's code to registered
 * loaders and calls the original get_code for every other one.  It is in
 * C so that it adds no frame to tracebacks: CPython strips importlib's
 * own frames from import errors, and a Python frame of ours between them
 * would show.
 *
 *   hook = _image.GetCodeHook(registry, base)
 *   SourceFileLoader.get_code = hook.method     # binds like a function
 *
 * registry: dict id(loader) -> (weakref to loader, finder); the finder's
 * _code(fullname) returns the code or None.  base: the original
 * get_code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "get_code_hook.h"

typedef struct {
    PyObject_HEAD
    PyObject *registry;
    PyObject *base;
} HookObject;

/* The image's code for `loader`, a new reference; Py_None if the loader
   is not served from an image; NULL on error. */
static PyObject *
image_code(HookObject *self, PyObject *loader, PyObject *fullname)
{
    PyObject *key = PyLong_FromVoidPtr(loader);
    if (key == NULL) {
        return NULL;
    }
    PyObject *entry = PyDict_GetItemWithError(self->registry, key);
    Py_DECREF(key);
    if (entry == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2
        || !PyWeakref_Check(PyTuple_GET_ITEM(entry, 0))) {
        return Py_NewRef(Py_None);
    }
    /* The id may have been reused: the entry must still be this loader. */
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *referent;
    if (PyWeakref_GetRef(PyTuple_GET_ITEM(entry, 0), &referent) < 0) {
        return NULL;
    }
    Py_XDECREF(referent);
#else
    PyObject *referent = PyWeakref_GET_OBJECT(PyTuple_GET_ITEM(entry, 0));
#endif
    if (referent != loader) {
        return Py_NewRef(Py_None);
    }
    PyObject *name = PyObject_GetAttrString(loader, "name");
    if (name == NULL) {
        return NULL;
    }
    int same = PyObject_RichCompareBool(name, fullname, Py_EQ);
    Py_DECREF(name);
    if (same <= 0) {
        return same < 0 ? NULL : Py_NewRef(Py_None);
    }
    return PyObject_CallMethod(PyTuple_GET_ITEM(entry, 1), "_code", "O",
                               fullname);
}

static PyObject *
Hook_call(HookObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *loader, *fullname;
    if (!PyArg_ParseTuple(args, "OO:get_code", &loader, &fullname)) {
        return NULL;
    }
    (void)kwds;
    PyObject *code = image_code(self, loader, fullname);
    if (code == NULL || code != Py_None) {
        return code;
    }
    Py_DECREF(code);
    return PyObject_CallFunctionObjArgs(self->base, loader, fullname, NULL);
}

static int
Hook_init(HookObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *registry, *base;
    static char *kwlist[] = {"registry", "base", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O:GetCodeHook", kwlist,
                                     &PyDict_Type, &registry, &base)) {
        return -1;
    }
    Py_XSETREF(self->registry, Py_NewRef(registry));
    Py_XSETREF(self->base, Py_NewRef(base));
    return 0;
}

static PyObject *
Hook_method(HookObject *self, void *Py_UNUSED(closure))
{
    return PyInstanceMethod_New((PyObject *)self);
}

static int
Hook_traverse(HookObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->registry);
    Py_VISIT(self->base);
    return 0;
}

static int
Hook_clear(HookObject *self)
{
    Py_CLEAR(self->registry);
    Py_CLEAR(self->base);
    return 0;
}

static void
Hook_dealloc(HookObject *self)
{
    PyObject_GC_UnTrack(self);
    Hook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyGetSetDef Hook_getset[] = {
    {"method", (getter)Hook_method, NULL,
     "the hook as a method, to set on a class", NULL},
    {NULL}
};

static PyTypeObject HookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "warmstart._image.GetCodeHook",
    .tp_basicsize = sizeof(HookObject),
    .tp_dealloc = (destructor)Hook_dealloc,
    .tp_call = (ternaryfunc)Hook_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "GetCodeHook(registry, base): SourceFileLoader.get_code that "
              "serves registered loaders from an image",
    .tp_traverse = (traverseproc)Hook_traverse,
    .tp_clear = (inquiry)Hook_clear,
    .tp_getset = Hook_getset,
    .tp_init = (initproc)Hook_init,
    .tp_new = PyType_GenericNew,
};

int
ws_get_code_hook_add(PyObject *module)
{
    if (PyType_Ready(&HookType) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "GetCodeHook", (PyObject *)&HookType);
}
