/* SIGTERM sent again until the interpreter has run its Python handler.
 *
 * A Python signal handler runs only when the main thread is back in the
 * interpreter's loop: the C handler the interpreter installs only notes the
 * signal, and a blocking call it interrupts (EINTR) returns to the loop.  A
 * SIGTERM that lands after the thread last looked for signals and before it
 * blocks (in sem_wait, read, waitpid...) interrupts nothing: the Python
 * handler runs when the call returns, which is never when what the process
 * waits for waits for it to die.  multiprocessing's Pool.terminate() is one:
 * it holds the lock of the workers' task queue, sends SIGTERM and joins them,
 * while a worker may be just about to wait for that lock.
 *
 * dhatc_sigterm_retry_install() puts a C handler in front of the
 * interpreter's: each SIGTERM goes to the interpreter's handler, and then
 * arms a one-shot timer that sends SIGTERM again, to the thread that installed
 * it (the main thread), RETRY_NS later; dhatc_sigterm_retry_cancel() (the
 * Python handler's first step) disarms it.  A SIGTERM that finds the thread
 * blocked interrupts the call, so the Python handler runs at most about
 * RETRY_NS after the thread blocks.  Nothing is given up on: the interval is
 * how soon the handler runs, not a limit.  A process that replaces the
 * handler (signal.signal) replaces this one too.
 *
 * Per process: a fork child inherits the handler but not the timer (there the
 * handler is the interpreter's alone until the child installs its own); exec
 * drops both.  Plain C, async-signal-safe in the handler. */
#ifndef DHATC_SIGTERM_H
#define DHATC_SIGTERM_H

/* Once the interpreter's handler is SIGTERM's (signal.signal), in the thread
 * it runs in: 0, or -1 with errno set (EINVAL: no handler to go in front of).
 * Again in the same process: 0, nothing done. */
int dhatc_sigterm_retry_install(void);

/* Disarms this process's timer (nothing if it has none). */
void dhatc_sigterm_retry_cancel(void);

#endif
