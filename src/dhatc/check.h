/* Invariants checked in debug and sanitizer builds (DHATC_CHECKS, set by
 * setup.py for DHATC_DEBUG=1 and DHATC_SANITIZE=1, and by the engine's C
 * tests): a broken invariant of the figures aborts at once, naming itself,
 * instead of becoming a wrong number in a file.  Compiled out otherwise.
 *
 * Safe anywhere, inside an allocator hook too: write(2) and abort() only. */
#ifndef DHATC_CHECK_H
#define DHATC_CHECK_H

#ifdef DHATC_CHECKS
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void dhatc_check_failed(const char *what, const char *file, int line)
{
    static const char prefix[] = "dhatc: internal invariant broken: ";
    char number[16];
    int n = (int)sizeof number;
    number[--n] = '\n';
    do {
        number[--n] = (char)('0' + line % 10);
        line /= 10;
    } while (line > 0 && n > 0);
    ssize_t ignored = write(2, prefix, sizeof prefix - 1);
    ignored = write(2, what, strlen(what));
    ignored = write(2, " at ", 4);
    ignored = write(2, file, strlen(file));
    ignored = write(2, ":", 1);
    ignored = write(2, number + n, sizeof number - (size_t)n);
    (void)ignored;
    abort();
}

#define DHATC_CHECK(condition) \
    ((condition) ? (void)0 : dhatc_check_failed(#condition, __FILE__, __LINE__))
#else
#define DHATC_CHECK(condition) ((void)0)
#endif

#endif
