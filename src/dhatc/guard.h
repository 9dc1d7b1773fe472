/* The per-thread reentrancy guard shared by every dhatc entry point.
 *
 * It is set while a thread is inside any dhatc hook, so that one block is
 * recorded once, at the outermost entry (PyObject_Malloc may call
 * PyMem_RawMalloc, which calls malloc), and so that nothing the engine does
 * for itself is recorded.  Mandatory around: every allocator hook (including
 * the call into the wrapped allocator), and every engine call that can run
 * while hooks are live.
 *
 * Initial-exec TLS: reading it never allocates and never calls into the
 * dynamic linker, which matters inside malloc. */
#ifndef DHATC_GUARD_H
#define DHATC_GUARD_H

extern __thread int dhatc_in_hook __attribute__((tls_model("initial-exec")));

#endif
