/* Per-interpreter state that the code object constructor uses and that
 * has no public API: the function-version counter.
 *
 * This is the only file built with Py_BUILD_CORE; keep it that way, so that
 * the rest of the core depends on public (if unstable) headers only.
 */
#define Py_BUILD_CORE 1
#include "image.h"

#if WS_SUPPORTED && WS_NEEDS_CODE_VERSION
#  include "internal/pycore_interp.h"
#endif

#if WS_SUPPORTED

uint32_t
ws_take_code_versions(uint32_t n)
{
#if WS_NEEDS_CODE_VERSION
    /* As init_code does: take the next value, advance unless the counter
       is exhausted (0), and never wrap around into used values. */
    PyInterpreterState *interp = PyInterpreterState_Get();
    uint32_t v = interp->func_state.next_version;
    if (v == 0 || n == 0) {
        return v;
    }
    if ((uint64_t)v + n > UINT32_MAX) {
        interp->func_state.next_version = 0;
        return 0;
    }
    interp->func_state.next_version = v + n;
    return v;
#else
    (void)n;
    return 0;
#endif
}

#endif /* WS_SUPPORTED */
