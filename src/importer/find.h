/* The import tier's find_spec fast path: see find.c. */
#ifndef WS_FIND_H
#define WS_FIND_H

#include <Python.h>

/* Add the FindCore type to `module`; -1 with an exception on error. */
int ws_find_core_add(PyObject *module);

#endif
