#define _POSIX_C_SOURCE 200809L
#include "util/strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int reserve(mlmx_strbuf *b, size_t extra)
{
    if (b->oom)
        return 0;
    if (b->len + extra + 1 <= b->cap)
        return 1;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + extra + 1)
        nc *= 2;
    char *ns = realloc(b->s, nc);
    if (!ns) {
        b->oom = 1;
        return 0;
    }
    b->s = ns;
    b->cap = nc;
    return 1;
}

void mlmx_sb_printf(mlmx_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void mlmx_sb_putn(mlmx_strbuf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void mlmx_sb_puts(mlmx_strbuf *b, const char *s) { mlmx_sb_putn(b, s, strlen(s)); }

void mlmx_sb_pad(mlmx_strbuf *b, const char *s, int w, int right)
{
    int n = (int)strlen(s);
    if (right)
        for (int i = n; i < w; i++)
            mlmx_sb_puts(b, " ");
    mlmx_sb_puts(b, s);
    if (!right)
        for (int i = n; i < w; i++)
            mlmx_sb_puts(b, " ");
}

char *mlmx_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *r = malloc(n);
    if (r)
        memcpy(r, s, n);
    return r;
}

char *mlmx_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return s;
}

void mlmx_sb_free(mlmx_strbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}

int mlmx_write_file_atomic(const char *path, const char *data, size_t len)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp)
        return ENOMEM;
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return e;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            free(tmp);
            return e;
        }
        off += (size_t)w;
    }
    /* mkstemp creates 0600; results are ordinary files */
    (void)fchmod(fd, 0644);
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return e;
    }
    free(tmp);
    return 0;
}
