/* Growable string for building output text; sticky out-of-memory flag so
 * callers check once at the end. */
#ifndef MLMX_UTIL_STRBUF_H
#define MLMX_UTIL_STRBUF_H
#include <stddef.h>

typedef struct mlmx_strbuf {
    char *s;
    size_t len, cap;
    int oom;
} mlmx_strbuf;

void mlmx_sb_printf(mlmx_strbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void mlmx_sb_puts(mlmx_strbuf *b, const char *s);
/* Append the first n bytes of s. */
void mlmx_sb_putn(mlmx_strbuf *b, const char *s, size_t n);
/* Append s padded with spaces to width w (left- or right-aligned). */
void mlmx_sb_pad(mlmx_strbuf *b, const char *s, int w, int right);
void mlmx_sb_free(mlmx_strbuf *b);
/* malloc'd copy of s (C11 has no strdup); NULL on OOM. */
char *mlmx_strdup(const char *s);
/* malloc'd printf; NULL on OOM. */
char *mlmx_asprintf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Write a file atomically: to a temporary name in the same directory, then
 * rename; nothing is left behind on failure. Returns 0 or errno. */
int mlmx_write_file_atomic(const char *path, const char *data, size_t len);
#endif
