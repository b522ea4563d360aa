/*
 * Test guest: output, strings and exit.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "guest.h"

void *memset(void *s, int c, size_t n)
{
    asm volatile("rep stosb" : "+D"(s), "+c"(n) : "a"(c) : "memory");
    return s;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *ret = d;

    asm volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return ret;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;

    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) {
            return x[i] - y[i];
        }
    }
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;

    while (s[n]) {
        n++;
    }
    return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i] || !a[i]) {
            return (uint8_t)a[i] - (uint8_t)b[i];
        }
    }
    return 0;
}

/* Decimal, or hex with 0x; stops at the first other character. */
uint64_t parse_u64(const char *s, const char **end)
{
    uint64_t v = 0;
    unsigned base = 10;

    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    for (;; s++) {
        unsigned d;

        if (*s >= '0' && *s <= '9') {
            d = *s - '0';
        } else if (base == 16 && *s >= 'a' && *s <= 'f') {
            d = *s - 'a' + 10;
        } else if (base == 16 && *s >= 'A' && *s <= 'F') {
            d = *s - 'A' + 10;
        } else {
            break;
        }
        v = v * base + d;
    }
    if (end) {
        *end = s;
    }
    return v;
}

struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size) {
        o->buf[o->len] = c;
    }
    o->len++;
}

static void put_num(struct out *o, uint64_t v, unsigned base, int width,
                    char pad, bool negative)
{
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (negative) {
        tmp[n++] = '-';
    }
    while (width-- > n) {
        put(o, pad);
    }
    while (n) {
        put(o, tmp[--n]);
    }
}

/* The subset tests use: %s %c %d %u %x %p %%, l/ll, width, 0 pad. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };

    for (; *fmt; fmt++) {
        char pad = ' ';
        int width = 0, longs = 0;
        uint64_t v;

        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);

            s = s ? s : "(null)";
            for (int n = strlen(s); width-- > n;) {
                put(&o, ' ');
            }
            while (*s) {
                put(&o, *s++);
            }
            break;
        }
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case 'd': {
            int64_t s = longs ? va_arg(ap, int64_t) : va_arg(ap, int);

            put_num(&o, s < 0 ? -(uint64_t)s : (uint64_t)s, 10, width, pad,
                    s < 0);
            break;
        }
        case 'u':
        case 'x':
            v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            put_num(&o, v, *fmt == 'u' ? 10 : 16, width, pad, false);
            break;
        case 'p':
            put(&o, '0');
            put(&o, 'x');
            put_num(&o, (uintptr_t)va_arg(ap, void *), 16, width, pad, false);
            break;
        case '%':
            put(&o, '%');
            break;
        default:
            put(&o, '?');
            break;
        }
    }
    if (size) {
        buf[o.len < size ? o.len : size - 1] = '\0';
    }
    return o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

/* One whole line per call, so lines from several vCPUs never interleave. */
static volatile int console_lock;

void printf(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(line)) {
        n = sizeof(line) - 1;
    }
    while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE)) {
        asm volatile("pause");
    }
    for (int i = 0; i < n; i++) {
        outb(DEBUGCON_PORT, line[i]);
    }
    __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

void guest_exit(uint32_t code)
{
    outl(DEBUG_EXIT_PORT, code);
    /* No isa-debug-exit device: stop here, the host times out. */
    for (;;) {
        asm volatile("cli; hlt");
    }
}

void fill_words(uint64_t base, uint64_t size, uint64_t stride,
                uint64_t (*word)(uint64_t))
{
    for (uint64_t a = base; a < base + size; a += stride) {
        write_word(a, word(a));
    }
}

uint64_t count_words(uint64_t base, uint64_t size, uint64_t stride,
                     uint64_t (*word)(uint64_t))
{
    uint64_t n = 0;

    for (uint64_t a = base; a < base + size; a += stride) {
        n += read_word(a) == (word ? word(a) : 0);
    }
    return n;
}
