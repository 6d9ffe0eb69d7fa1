/* Reading the lme4 reference fixtures (data/reference/lmm/NAME.ref, written by
 * data/reference/lmm_reference.R): one item per line, "key v1 v2 ...". */
#ifndef MLMX_TESTS_REFUTIL_H
#define MLMX_TESTS_REFUTIL_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_MAXLINES 128
#define REF_MAXTOK 64

typedef struct ref_line {
    char key[32];
    char *rest;             /* the text after the key */
    int ntok;
    char *tok[REF_MAXTOK];  /* tokens of rest (split on spaces) */
} ref_line;

typedef struct ref_file {
    int n;
    ref_line lines[REF_MAXLINES];
    char *buf[REF_MAXLINES];
} ref_file;

static inline int ref_load(const char *path, ref_file *r)
{
    memset(r, 0, sizeof *r);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    char line[8192];
    while (r->n < REF_MAXLINES && fgets(line, sizeof line, fp)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *sp = strchr(line, ' ');
        ref_line *l = &r->lines[r->n];
        if (!sp)
            continue;
        *sp = '\0';
        size_t kl = strlen(line) < sizeof l->key - 1 ? strlen(line) : sizeof l->key - 1;
        memcpy(l->key, line, kl);
        l->key[kl] = '\0';
        r->buf[r->n] = strdup(sp + 1);
        l->rest = strdup(sp + 1);
        char *save = NULL;
        for (char *t = strtok_r(r->buf[r->n], " ", &save); t && l->ntok < REF_MAXTOK;
             t = strtok_r(NULL, " ", &save))
            l->tok[l->ntok++] = t;
        r->n++;
    }
    fclose(fp);
    return 0;
}

static inline void ref_free(ref_file *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->buf[i]);
        free(r->lines[i].rest);
    }
}

/* The first line with this key (or the k-th, counting from 0). */
static inline const ref_line *ref_get_nth(const ref_file *r, const char *key, int k)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->lines[i].key, key) == 0 && k-- == 0)
            return &r->lines[i];
    return NULL;
}

static inline const ref_line *ref_get(const ref_file *r, const char *key)
{
    return ref_get_nth(r, key, 0);
}

static inline double ref_num(const ref_file *r, const char *key, int i)
{
    const ref_line *l = ref_get(r, key);
    if (!l || i >= l->ntok)
        return NAN;
    return strtod(l->tok[i], NULL);
}

/* |a - b| <= rel * max(|b|, scale): relative, with an absolute floor at the
 * given scale for values near zero. */
static inline int close_rel(double a, double b, double rel, double scale)
{
    double s = fabs(b) > scale ? fabs(b) : scale;
    return fabs(a - b) <= rel * s;
}

/* A whole file as a malloc'd string (NULL if it cannot be read). */
static inline char *ref_slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        size_t got = fread(s, 1, (size_t)n, fp);
        s[got] = '\0';
    }
    fclose(fp);
    return s;
}

/* At most cap - 1 bytes of a file into buf ("" if it cannot be read). */
static inline void ref_slurp_buf(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return;
    size_t n = fread(buf, 1, cap - 1, fp);
    buf[n] = '\0';
    fclose(fp);
}

#endif
