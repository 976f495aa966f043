/* Learned prefaulting for the warm server's spare workers (pages.c). */
#ifndef WS_PAGES_H
#define WS_PAGES_H

#include <Python.h>

/* At most this many pages are recorded and copied ahead (64 MiB of
   4 KiB pages): the memory a waiting spare may hold of its own. */
#define WS_PREFAULT_MAX_PAGES 16384

/* Add written(buffer) and prefault(buffer) to the module: 0, or -1 with
   an exception set. */
int ws_pages_add(PyObject *module);

#endif /* WS_PAGES_H */
