/*
 * Test aid for the launch's "measured from settled memory" rule: with
 * $GMEM_LAUNCH_STANDIN_DISCARD_DELAY_MS set, every discard QEMU's async
 * discard worker (the thread "gmem-discard", named with -name
 * debug-threads=on) makes, madvise(MADV_DONTNEED or MADV_REMOVE) or
 * fallocate(FALLOC_FL_PUNCH_HOLE), waits that long before it reaches the
 * kernel, and the launch commands read their sources only once no such
 * discard is in flight. That widens to a certainty the window in which a
 * discard queued before the launch could free a source between QEMU's
 * hashing and the command, as the firmware would then see it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "standin.h"

#define EXPORT __attribute__((visibility("default")))

static GMutex lock;
static GCond settled;
static unsigned in_flight;

static unsigned delay_ms(void)
{
    const char *d = getenv("GMEM_LAUNCH_STANDIN_DISCARD_DELAY_MS");
    char name[16] = "";

    if (!d || prctl(PR_GET_NAME, name) || strcmp(name, "gmem-discard")) {
        return 0;
    }
    return g_ascii_strtoull(d, NULL, 0);
}

static void discard_begin(const char *how, uint64_t addr, uint64_t len,
                          unsigned ms)
{
    g_mutex_lock(&lock);
    in_flight++;
    g_mutex_unlock(&lock);
    standin_report("{\"event\": \"discard-delayed\", \"how\": \"%s\", "
                   "\"addr\": %" PRIu64 ", \"size\": %" PRIu64 "}", how,
                   addr, len);
    g_usleep(ms * 1000ULL);
}

static void discard_end(void)
{
    g_mutex_lock(&lock);
    if (!--in_flight) {
        g_cond_broadcast(&settled);
    }
    g_mutex_unlock(&lock);
    standin_report("{\"event\": \"discard-done\"}");
}

void standin_discards_settle(void)
{
    gint64 deadline = g_get_monotonic_time() + 60 * G_TIME_SPAN_SECOND;

    g_mutex_lock(&lock);
    while (in_flight && g_cond_wait_until(&settled, &lock, deadline)) {
        /* wait */
    }
    g_mutex_unlock(&lock);
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
    unsigned ms = (advice == MADV_DONTNEED || advice == MADV_REMOVE) ?
                  delay_ms() : 0;
    long r;

    if (ms) {
        discard_begin("madvise", (uintptr_t)addr, len, ms);
    }
    r = syscall(SYS_madvise, addr, len, advice);
    if (ms) {
        discard_end();
    }
    return r;
}

EXPORT int fallocate(int fd, int mode, off_t offset, off_t len)
{
    unsigned ms = (mode & FALLOC_FL_PUNCH_HOLE) ? delay_ms() : 0;
    long r;

    if (ms) {
        discard_begin("fallocate", offset, len, ms);
    }
    r = syscall(SYS_fallocate, fd, mode, offset, len);
    if (ms) {
        discard_end();
    }
    return r;
}

EXPORT int fallocate64(int fd, int mode, off_t offset, off_t len)
{
    return fallocate(fd, mode, offset, len);
}
