/* The import tier's hot path: ImageFinder.find_spec for a module the
 * image's index can be trusted for.
 *
 * importer.py holds the policy and handles every case; this file only
 * answers the common one fast.  FindCore.find(fullname, path) returns
 *
 *   None            the image does not hold the module;
 *   a spec          an extension module the build saw imported, that the
 *                   search would still find where it was (find_extension);
 *   a spec          the module is served from the image: the live search
 *                   path matches the build record up to the module's entry,
 *                   the normal file finder handles those entries, their
 *                   directories are unchanged or their finders agree that
 *                   the search ends at the image's file, and the source
 *                   is unchanged (size, mtime, device and inode);
 *   NotImplemented  anything else: the Python code decides.
 *
 * The conditions are those of ImageFinder._search_unchanged and _fresh,
 * in the same order (keep them in step), but for changed directories:
 * where Python resolves the module with a full path search, this asks
 * only the finders of the changed entries (entry_agrees).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "find.h"
#include "image.h"

#if WS_SUPPORTED

typedef struct {
    PyObject_HEAD
    PyObject *image;            /* warmstart._image.Image */
    PyObject *entry;            /* name -> entry index (int) */
    PyObject *pkg_paths;        /* package -> recorded __path__ (list) */
    PyObject *sys_path;         /* recorded sys.path (list) */
    PyObject *dir_mtimes;       /* directory -> mtime_ns or None */
    PyObject *dir_changed;      /* directory -> True: changed, this process */
    PyObject *path_hooks;       /* sys.path_hooks at activation (list) */
    PyObject *file_finder;      /* importlib.machinery.FileFinder */
    PyObject *source_loader;    /* importlib.machinery.SourceFileLoader */
    PyObject *ext;              /* extension module -> (origin, entry) */
    PyObject *ext_loader;       /* importlib.machinery.ExtensionFileLoader */
    PyObject *make_ext_spec;    /* callable(fullname, origin) */
    PyObject *make_spec;        /* callable(fullname, origin, is_package) */
    PyObject *cwd;              /* working directory at build time (str) */
    int check_mtime;            /* 1: compare size and mtime; 0: none */
} FindCoreObject;

#define NOT_HANDLED Py_NewRef(Py_NotImplemented)

/* 1 if directory `entry` is unchanged since the build, 0 if not, -1.
   Stat-ed on every lookup, as the normal FileFinder stats its directory
   on every find_spec: a module file created while the program runs
   changes the directory and is seen.  Only a change is remembered (in
   dir_changed, until invalidate_caches): from then on the entry's own finder
   is asked, which is right whatever happens to the directory later. */
static int
dir_unchanged(FindCoreObject *self, PyObject *entry)
{
    PyObject *changed = PyDict_GetItemWithError(self->dir_changed, entry);
    if (changed != NULL) {
        return 0;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *then = PyDict_GetItemWithError(self->dir_mtimes, entry);
    if (then == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    const char *path = PyUnicode_AsUTF8(entry);
    if (path == NULL) {
        return -1;
    }
    struct stat st;
    int same;
    if (stat(path, &st) < 0) {
        same = then == Py_None;         /* absent then and now */
    }
    else if (then == Py_None) {
        same = 0;
    }
    else {
        long long ns = PyLong_AsLongLong(then);
        if (ns == -1 && PyErr_Occurred()) {
            return -1;
        }
        same = ns == (long long)st.st_mtim.tv_sec * 1000000000LL
                     + st.st_mtim.tv_nsec;
    }
    if (!same && PyDict_SetItem(self->dir_changed, entry, Py_True) < 0) {
        return -1;
    }
    return same;
}

/* The directory of path entry `entry` (as sys.path_importer_cache names
   it) has changed since the build: a file was added or removed there.
   Ask the entry's own finder -- the FileFinder the normal import uses,
   with its cache of the directory -- what it finds for `fullname`.
   Before the module's own entry (origin NULL) it must find nothing, or
   only a namespace portion, which PathFinder passes over too; at the
   module's own entry it must find the image's file, with a loader of type
   `loader_type`.  1 if so, 0 if not or if the entry has no finder yet
   (the Python side creates it), -1 on error. */
static int
entry_agrees(FindCoreObject *self, PyObject *cache, PyObject *entry,
             PyObject *fullname, PyObject *origin, PyObject *loader_type)
{
    PyObject *finder = PyDict_GetItemWithError(cache, entry);
    if (finder == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if ((PyObject *)Py_TYPE(finder) != self->file_finder) {
        return 0;
    }
    Py_INCREF(finder);
    PyObject *spec = PyObject_CallMethod(finder, "find_spec", "O", fullname);
    Py_DECREF(finder);
    if (spec == NULL) {
        /* The normal import meets the same error: let it. */
        PyErr_Clear();
        return 0;
    }
    int ok = 0;
    if (spec == Py_None) {
        ok = origin == NULL;
    }
    else {
        PyObject *loader = PyObject_GetAttrString(spec, "loader");
        PyObject *found = loader ? PyObject_GetAttrString(spec, "origin")
                                 : NULL;
        if (found == NULL) {
            PyErr_Clear();
        }
        else if (origin == NULL) {
            ok = loader == Py_None;
        }
        else {
            ok = (PyObject *)Py_TYPE(loader) == loader_type
                 && PyUnicode_CheckExact(found)
                 && PyUnicode_Compare(found, origin) == 0;
        }
        Py_XDECREF(loader);
        Py_XDECREF(found);
    }
    Py_DECREF(spec);
    return ok;
}

/* 1 if the normal path search for `fullname` would stop at entry k of
   `live` and find `origin` there: entries 0..k are the recorded ones,
   handled by the file finder, and their directories are unchanged since
   the build -- or, where one has changed, its finder agrees
   (entry_agrees); 0 if not; -1 on error. */
static int
search_unchanged(FindCoreObject *self, PyObject *live, PyObject *recorded,
                 Py_ssize_t k, PyObject *fullname, PyObject *origin,
                 PyObject *loader_type)
{
    if (!PyList_CheckExact(live) || !PyList_CheckExact(recorded)
        || PyList_GET_SIZE(live) <= k || PyList_GET_SIZE(recorded) <= k) {
        return 0;
    }
    PyObject *hooks = PySys_GetObject("path_hooks");
    PyObject *cache = PySys_GetObject("path_importer_cache");
    if (hooks == NULL || cache == NULL || !PyDict_Check(cache)) {
        return 0;
    }
    int same = PyObject_RichCompareBool(hooks, self->path_hooks, Py_EQ);
    if (same <= 0) {
        return same;
    }
    for (Py_ssize_t i = 0; i <= k; i++) {
        PyObject *entry = PyList_GET_ITEM(live, i);
        if (!PyUnicode_CheckExact(entry)) {
            return 0;
        }
        int eq = PyUnicode_Compare(entry, PyList_GET_ITEM(recorded, i));
        if (eq != 0) {
            return eq == -1 && PyErr_Occurred() ? -1 : 0;
        }
        PyObject *finder = PyDict_GetItemWithError(cache, entry);
        if (finder == NULL && PyErr_Occurred()) {
            return -1;
        }
        if (finder == Py_None) {
            /* No path hook took the entry (a missing zip file, say):
               PathFinder passes over it without a look, so nothing there
               can shadow the module; nor can it be the module's entry. */
            if (i == k) {
                return 0;
            }
            continue;
        }
        if (finder != NULL
            && (PyObject *)Py_TYPE(finder) != self->file_finder) {
            return 0;
        }
        int ok;
        PyObject *key;              /* the directory, as recorded */
        if (PyUnicode_GET_LENGTH(entry) > 0
            && PyUnicode_READ_CHAR(entry, 0) == '/') {
            key = Py_NewRef(entry);
        }
        else {
            /* Relative to the working directory, which must be the one
               of the build; the directory is recorded as os.path.join
               names it. */
            char buf[PATH_MAX];
            const char *cwd = PyUnicode_AsUTF8(self->cwd);
            if (cwd == NULL) {
                return -1;
            }
            if (getcwd(buf, sizeof buf) == NULL || strcmp(buf, cwd) != 0) {
                return 0;
            }
            size_t n = strlen(cwd);
            key = PyUnicode_FromFormat(
                "%s%s%U", cwd, n && cwd[n - 1] == '/' ? "" : "/", entry);
            if (key == NULL) {
                return -1;
            }
        }
        ok = dir_unchanged(self, key);
        Py_DECREF(key);
        if (ok == 0) {
            /* PathFinder files the entry '' under the working directory,
               which is the build's (checked above). */
            ok = entry_agrees(self, cache,
                              PyUnicode_GET_LENGTH(entry) ? entry : self->cwd,
                              fullname, i == k ? origin : NULL, loader_type);
        }
        if (ok <= 0) {
            return ok;
        }
    }
    return 1;
}

/* The recorded and the live search path for `name` (borrowed): sys.path
   for a top-level module, the parent package's __path__ otherwise.  1 if
   there are both, 0 if not, -1 on error. */
static int
search_paths(FindCoreObject *self, const char *name, PyObject *path,
             PyObject **recorded, PyObject **live)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL) {
        *recorded = self->sys_path;
        *live = path == Py_None ? PySys_GetObject("path") : path;
    }
    else {
        PyObject *parent = PyUnicode_FromStringAndSize(name, dot - name);
        if (parent == NULL) {
            return -1;
        }
        *recorded = PyDict_GetItemWithError(self->pkg_paths, parent);
        Py_DECREF(parent);
        if (*recorded == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        *live = path;
    }
    return *live != NULL;
}

/* An extension module the build saw imported: its spec if the search
   would still find its file, where it was.  The file's contents do not
   matter: the normal import would load whatever is at that path too. */
static PyObject *
find_extension(FindCoreObject *self, PyObject *fullname, PyObject *path,
               PyObject *where)
{
    if (!PyTuple_CheckExact(where) || PyTuple_GET_SIZE(where) != 2
        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(where, 0))
        || !PyLong_CheckExact(PyTuple_GET_ITEM(where, 1))) {
        return NOT_HANDLED;
    }
    PyObject *origin = PyTuple_GET_ITEM(where, 0);
    Py_ssize_t k = PyLong_AsSsize_t(PyTuple_GET_ITEM(where, 1));
    if (k == -1 && PyErr_Occurred()) {
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(fullname);
    if (name == NULL) {
        return NULL;
    }
    PyObject *recorded, *live;
    int r = search_paths(self, name, path, &recorded, &live);
    if (r <= 0) {
        return r < 0 ? NULL : NOT_HANDLED;
    }
    Py_INCREF(origin);
    r = k < 0 ? 0 : search_unchanged(self, live, recorded, k, fullname,
                                     origin, self->ext_loader);
    PyObject *spec = r > 0 ? PyObject_CallFunctionObjArgs(
                                 self->make_ext_spec, fullname, origin, NULL)
                           : r < 0 ? NULL : NOT_HANDLED;
    Py_DECREF(origin);
    return spec;
}

static PyObject *
FindCore_find(FindCoreObject *self, PyObject *args)
{
    PyObject *fullname, *path;
    if (!PyArg_ParseTuple(args, "UO:find", &fullname, &path)) {
        return NULL;
    }
    PyObject *kobj = PyDict_GetItemWithError(self->entry, fullname);
    if (kobj == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        PyObject *where = PyDict_GetItemWithError(self->ext, fullname);
        if (where != NULL) {
            return find_extension(self, fullname, path, where);
        }
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    Py_ssize_t k = PyLong_AsSsize_t(kobj);
    if (k == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (k < 0 || !self->check_mtime) {
        return NOT_HANDLED;
    }
    ws_image *img = ws_image_of(self->image);
    if (img == NULL) {
        return NOT_HANDLED;
    }
    Py_ssize_t len;
    const char *name = PyUnicode_AsUTF8AndSize(fullname, &len);
    if (name == NULL) {
        return NULL;
    }
    Py_ssize_t i = ws_image_find(img, name, len);
    if (i < 0) {
        if (i == -2) {
            PyErr_Clear();      /* damaged index: Python reports it */
        }
        return NOT_HANDLED;
    }
    const struct ws_module *e = ws_image_entry(img, (uint32_t)i);
    if (e == NULL) {
        PyErr_Clear();
        return NOT_HANDLED;
    }
    PyObject *recorded, *live;
    int r = search_paths(self, name, path, &recorded, &live);
    if (r <= 0) {
        return r < 0 ? NULL : NOT_HANDLED;
    }
    PyObject *origin = PyUnicode_DecodeUTF8(img->names + e->origin_off,
                                            (Py_ssize_t)e->origin_len,
                                            "surrogateescape");
    if (origin == NULL) {
        return NULL;
    }
    int same = search_unchanged(self, live, recorded, k, fullname, origin,
                                self->source_loader);
    if (same <= 0) {
        Py_DECREF(origin);
        return same < 0 ? NULL : NOT_HANDLED;
    }
    /* The source is the one the code was compiled from. */
    PyObject *origin_b = PyUnicode_EncodeFSDefault(origin);
    struct stat st;
    int fresh = origin_b != NULL
                && stat(PyBytes_AS_STRING(origin_b), &st) == 0
                && (uint64_t)st.st_size == e->source_size
                && (int64_t)st.st_mtim.tv_sec * 1000000000LL
                   + st.st_mtim.tv_nsec == e->source_mtime_ns
                && (e->source_ino == 0
                    || ((uint64_t)st.st_dev == e->source_dev
                        && (uint64_t)st.st_ino == e->source_ino));
    Py_XDECREF(origin_b);
    if (PyErr_Occurred()) {
        Py_DECREF(origin);
        return NULL;
    }
    if (!fresh) {
        Py_DECREF(origin);
        return NOT_HANDLED;     /* Python records why and falls back */
    }
    PyObject *spec = PyObject_CallFunction(
        self->make_spec, "OOO", fullname, origin,
        (e->flags & WS_MODULE_PACKAGE) ? Py_True : Py_False);
    Py_DECREF(origin);
    return spec;
}

static int
FindCore_init(FindCoreObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"image", "entry", "pkg_paths", "sys_path",
                             "dir_mtimes", "dir_changed", "path_hooks",
                             "file_finder", "source_loader", "make_spec",
                             "check_mtime", "cwd", "ext", "ext_loader",
                             "make_ext_spec", NULL};
    PyObject *image, *entry, *pkg_paths, *sys_path, *dir_mtimes, *dir_changed,
             *path_hooks, *file_finder, *source_loader, *make_spec, *cwd,
             *ext, *ext_loader, *make_ext_spec;
    int check_mtime;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "OO!O!O!O!O!O!OOOpUO!OO:FindCore", kwlist, &image,
            &PyDict_Type, &entry, &PyDict_Type, &pkg_paths, &PyList_Type,
            &sys_path, &PyDict_Type, &dir_mtimes, &PyDict_Type, &dir_changed,
            &PyList_Type, &path_hooks, &file_finder, &source_loader, &make_spec,
            &check_mtime, &cwd, &PyDict_Type, &ext, &ext_loader,
            &make_ext_spec)) {
        return -1;
    }
    if (ws_image_of(image) == NULL) {
        PyErr_SetString(PyExc_TypeError, "image must be an open Image");
        return -1;
    }
    Py_XSETREF(self->image, Py_NewRef(image));
    Py_XSETREF(self->entry, Py_NewRef(entry));
    Py_XSETREF(self->pkg_paths, Py_NewRef(pkg_paths));
    Py_XSETREF(self->sys_path, Py_NewRef(sys_path));
    Py_XSETREF(self->dir_mtimes, Py_NewRef(dir_mtimes));
    Py_XSETREF(self->dir_changed, Py_NewRef(dir_changed));
    Py_XSETREF(self->path_hooks, Py_NewRef(path_hooks));
    Py_XSETREF(self->file_finder, Py_NewRef(file_finder));
    Py_XSETREF(self->source_loader, Py_NewRef(source_loader));
    Py_XSETREF(self->make_spec, Py_NewRef(make_spec));
    Py_XSETREF(self->cwd, Py_NewRef(cwd));
    Py_XSETREF(self->ext, Py_NewRef(ext));
    Py_XSETREF(self->ext_loader, Py_NewRef(ext_loader));
    Py_XSETREF(self->make_ext_spec, Py_NewRef(make_ext_spec));
    self->check_mtime = check_mtime;
    return 0;
}

static int
FindCore_traverse(FindCoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->image);
    Py_VISIT(self->entry);
    Py_VISIT(self->pkg_paths);
    Py_VISIT(self->sys_path);
    Py_VISIT(self->dir_mtimes);
    Py_VISIT(self->dir_changed);
    Py_VISIT(self->path_hooks);
    Py_VISIT(self->file_finder);
    Py_VISIT(self->source_loader);
    Py_VISIT(self->make_spec);
    Py_VISIT(self->cwd);
    Py_VISIT(self->ext);
    Py_VISIT(self->ext_loader);
    Py_VISIT(self->make_ext_spec);
    return 0;
}

static int
FindCore_clear(FindCoreObject *self)
{
    Py_CLEAR(self->image);
    Py_CLEAR(self->entry);
    Py_CLEAR(self->pkg_paths);
    Py_CLEAR(self->sys_path);
    Py_CLEAR(self->dir_mtimes);
    Py_CLEAR(self->dir_changed);
    Py_CLEAR(self->path_hooks);
    Py_CLEAR(self->file_finder);
    Py_CLEAR(self->source_loader);
    Py_CLEAR(self->make_spec);
    Py_CLEAR(self->cwd);
    Py_CLEAR(self->ext);
    Py_CLEAR(self->ext_loader);
    Py_CLEAR(self->make_ext_spec);
    return 0;
}

static void
FindCore_dealloc(FindCoreObject *self)
{
    PyObject_GC_UnTrack(self);
    FindCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef FindCore_methods[] = {
    {"find", (PyCFunction)FindCore_find, METH_VARARGS,
     "find(fullname, path) -> spec, None, or NotImplemented"},
    {NULL}
};

static PyTypeObject FindCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "warmstart._image.FindCore",
    .tp_basicsize = sizeof(FindCoreObject),
    .tp_dealloc = (destructor)FindCore_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The image finder's fast path (see importer.py).",
    .tp_traverse = (traverseproc)FindCore_traverse,
    .tp_clear = (inquiry)FindCore_clear,
    .tp_methods = FindCore_methods,
    .tp_init = (initproc)FindCore_init,
    .tp_new = PyType_GenericNew,
};

int
ws_find_core_add(PyObject *module)
{
    if (PyType_Ready(&FindCoreType) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "FindCore", (PyObject *)&FindCoreType);
}

#else /* !WS_SUPPORTED */

int
ws_find_core_add(PyObject *module)
{
    (void)module;
    return 0;
}

#endif /* WS_SUPPORTED */
