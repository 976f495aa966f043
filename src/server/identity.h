/* What the warm server compares between a client and itself before a
   launch (src/warmstart/confinement.py says what and why). */
#ifndef WS_IDENTITY_H
#define WS_IDENTITY_H

#include <Python.h>

/* Add identity(pid) and settable(pid) to the module: 0, or -1 with an exception set. */
int ws_identity_add(PyObject *module);

#endif /* WS_IDENTITY_H */
