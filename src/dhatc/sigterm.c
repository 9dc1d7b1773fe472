/* SIGTERM sent again until the interpreter has run its Python handler: see
 * sigterm.h. */
#include "sigterm.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* glibc names the thread of SIGEV_THREAD_ID only through the union (2.36). */
#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* How long after a SIGTERM the next one comes while the handler has not run. */
#define RETRY_NS (10L * 1000 * 1000)

/* The interpreter's handler, which ours calls first.  Written before ours is
 * installed, then only read (a fork child keeps its copy). */
static struct sigaction interpreter_action;
/* This process's timer, valid while `timer_pid` is this process's pid: set
 * after `timer`, so a handler that sees the pid sees the timer. */
static timer_t timer;
static atomic_int timer_pid;

static void on_sigterm(int signum, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    if (interpreter_action.sa_flags & SA_SIGINFO) {
        interpreter_action.sa_sigaction(signum, info, context);
    } else if (interpreter_action.sa_handler != SIG_DFL &&
               interpreter_action.sa_handler != SIG_IGN) {
        interpreter_action.sa_handler(signum);
    }
    if (atomic_load(&timer_pid) == (int)getpid()) {
        struct itimerspec next;
        memset(&next, 0, sizeof next);
        next.it_value.tv_nsec = RETRY_NS;
        (void)timer_settime(timer, 0, &next, NULL);
    }
    errno = saved_errno;
}

static bool is_ours(const struct sigaction *action)
{
    return (action->sa_flags & SA_SIGINFO) && action->sa_sigaction == on_sigterm;
}

int dhatc_sigterm_retry_install(void)
{
    int pid = (int)getpid();
    if (atomic_load(&timer_pid) == pid) {
        return 0;
    }
    struct sigaction current;
    if (sigaction(SIGTERM, NULL, &current) != 0) {
        return -1;
    }
    bool ours = is_ours(&current);  /* inherited through fork */
    if (!ours && !(current.sa_flags & SA_SIGINFO) &&
        (current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN)) {
        errno = EINVAL;
        return -1;
    }
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = SIGTERM;
    event.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
    timer_t created;
    if (timer_create(CLOCK_MONOTONIC, &event, &created) != 0) {
        return -1;
    }
    timer = created;
    atomic_store(&timer_pid, pid);
    if (ours) {
        return 0;
    }
    interpreter_action = current;
    struct sigaction action = current;  /* the interpreter's mask and flags */
    action.sa_sigaction = on_sigterm;
    action.sa_flags |= SA_SIGINFO;
    if (sigaction(SIGTERM, &action, NULL) != 0) {
        int saved_errno = errno;
        atomic_store(&timer_pid, 0);
        (void)timer_delete(created);
        errno = saved_errno;
        return -1;
    }
    return 0;
}

void dhatc_sigterm_retry_cancel(void)
{
    if (atomic_load(&timer_pid) == (int)getpid()) {
        struct itimerspec none;
        memset(&none, 0, sizeof none);
        (void)timer_settime(timer, 0, &none, NULL);
    }
}
