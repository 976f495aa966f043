/* The import tier's C part: see get_code_hook.c. */
#ifndef WS_GET_CODE_HOOK_H
#define WS_GET_CODE_HOOK_H

#include <Python.h>

/* Add the GetCodeHook type to `module`; -1 with an exception on error. */
int ws_get_code_hook_add(PyObject *module);

#endif
