/* Native allocations: connects the running heap profile to the preload
 * library (libdhatc_preload.so) when the process was started with it, so
 * that blocks from malloc & co. are recorded with the calling thread's
 * Python stack under a top frame naming the C function. */
#ifndef DHATC_NATIVE_H
#define DHATC_NATIVE_H

#include <stdbool.h>

/* Whether the preload library is loaded, of this build's ABI, and the one
 * whose malloc the process calls.  Looked up once; needs no GIL. */
bool dhatc_native_available(void);

/* Starts / stops reporting native allocations to the engine.  Without the
 * preload library both do nothing.  Reports arriving after detach (a thread
 * that was already inside malloc) are ignored by the engine's mode check. */
void dhatc_native_attach(void);
void dhatc_native_detach(void);

/* A function of the preload library (so that native stacks leave its
 * frames out), NULL without it. */
const void *dhatc_native_preload_address(void);

#endif
