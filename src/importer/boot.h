/* The start-up hook's fast path: see boot.c. */
#ifndef WS_BOOT_H
#define WS_BOOT_H

#include <Python.h>

/* Add boot() and the PendingFinder type to `module`; -1 with an exception
   on error. */
int ws_boot_add(PyObject *module);

#endif
