/*
 * What the stand-in tells the test: one JSON object per line, appended
 * to $GMEM_LAUNCH_STANDIN_REPORT (every command, every refusal, the
 * measurement); and the failures a test asks it to inject
 * ($GMEM_LAUNCH_STANDIN_FAIL).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "standin.h"

void standin_report(const char *fmt, ...)
{
    const char *path = getenv("GMEM_LAUNCH_STANDIN_REPORT");
    g_autofree char *line = NULL;
    va_list ap;
    FILE *f;

    va_start(ap, fmt);
    line = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (!path || !(f = fopen(path, "a"))) {
        return;
    }
    fprintf(f, "%s\n", line);
    fclose(f);
}

int standin_refuse(const char *command, int err, const char *rule)
{
    fprintf(stderr, "launch-standin: %s refused (%s): %s\n", command,
            strerror(-err), rule);
    standin_report("{\"event\": \"refused\", \"command\": \"%s\", "
                   "\"errno\": %d, \"rule\": \"%s\"}", command, -err, rule);
    return err;
}

char *standin_hex(const void *buf, size_t len)
{
    GString *s = g_string_sized_new(len * 2);

    for (size_t i = 0; i < len; i++) {
        g_string_append_printf(s, "%02x", ((const uint8_t *)buf)[i]);
    }
    return g_string_free(s, false);
}

static const struct {
    const char *name;
    int err;
} errnos[] = {
    { "EFAULT", EFAULT }, { "EINVAL", EINVAL }, { "EIO", EIO },
    { "EBUSY", EBUSY }, { "EAGAIN", EAGAIN }, { "EINTR", EINTR },
    { "ENOMEM", ENOMEM }, { "EPERM", EPERM }, { "ENOTTY", ENOTTY },
    { "EBADF", EBADF }, { "E2BIG", E2BIG },
};

int standin_injected(const char *command, uint64_t *fw_error)
{
    static GHashTable *calls;
    const char *spec = getenv("GMEM_LAUNCH_STANDIN_FAIL");
    g_auto(GStrv) all = NULL;
    g_auto(GStrv) f = NULL;
    unsigned long first;
    char *end;
    unsigned n;

    if (!calls) {
        calls = g_hash_table_new(g_str_hash, g_str_equal);
    }
    n = GPOINTER_TO_UINT(g_hash_table_lookup(calls, command)) + 1;
    g_hash_table_insert(calls, (char *)command, GUINT_TO_POINTER(n));
    if (!spec) {
        return 0;
    }
    /* Several specifications, separated by commas: the first that fits. */
    all = g_strsplit(spec, ",", -1);
    for (unsigned i = 0; all[i] && !f; i++) {
        f = g_strsplit(all[i], ":", 4);
        if (g_strv_length(f) < 3 || strcmp(f[0], command)) {
            g_clear_pointer(&f, g_strfreev);
            continue;
        }
        /* "N": the Nth call only; "N+": the Nth and every later call. */
        first = g_ascii_strtoull(f[1], &end, 0);
        if (*end == '+' ? n < first : n != first) {
            g_clear_pointer(&f, g_strfreev);
        }
    }
    if (!f) {
        return 0;
    }
    *fw_error = f[3] ? g_ascii_strtoull(f[3], NULL, 0) : 0;
    for (unsigned i = 0; i < G_N_ELEMENTS(errnos); i++) {
        if (!strcmp(errnos[i].name, f[2])) {
            standin_report("{\"event\": \"injected\", \"command\": \"%s\", "
                           "\"call\": %u, \"errno\": %d, \"fw-error\": "
                           "%" PRIu64 "}", command, n, errnos[i].err,
                           *fw_error);
            return -errnos[i].err;
        }
    }
    fprintf(stderr, "launch-standin: GMEM_LAUNCH_STANDIN_FAIL: unknown "
            "errno %s\n", f[2]);
    abort();
}
