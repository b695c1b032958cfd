/* util.c - errors, allocation, atomic output files, number parsing. */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char errbuf[512];

int vt_seterr(const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    errno = saved;
    return -1;
}

const char *vt_error(void) { return errbuf; }

static void out_of_memory(size_t n)
{
    fprintf(stderr, "vtkit: out of memory (allocating %zu bytes)\n", n);
    exit(1);
}

void *vt_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) out_of_memory(n);
    return p;
}

void *vt_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) out_of_memory(n * size);
    return p;
}

void *vt_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) out_of_memory(n);
    return q;
}

char *vt_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(vt_xmalloc(n), s, n);
}

int vt_mul_size(size_t a, size_t b, size_t *out)
{
    if (b && a > SIZE_MAX / b) return -1;
    *out = a * b;
    return 0;
}

int vt_add_size(size_t a, size_t b, size_t *out)
{
    if (a > SIZE_MAX - b) return -1;
    *out = a + b;
    return 0;
}

int vt_read_stream(FILE *f, size_t max, uint8_t **data, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = vt_xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= max) { free(buf); return vt_seterr("file is larger than %zu bytes", max); }
            cap = cap * 2 > max ? max : cap * 2;
            buf = vt_xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) { free(buf); return vt_seterr("read error: %s", strerror(errno)); }
    *data = buf;
    *len = n;
    return 0;
}

int vt_read_file(const char *path, size_t max, uint8_t **data, size_t *len)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f) return vt_seterr("%s", strerror(errno));
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return vt_seterr("is a directory");
    }
    int rc = vt_read_stream(f, max, data, len);
    fclose(f);
    return rc;
}

/* ---- atomic output ---- */

/* mkstemp makes 0600 files; outputs should get the usual 0666 & ~umask. */
static mode_t current_umask(void)
{
    mode_t m = umask(022);
    umask(m);
    return m;
}

int vt_out_open(vt_out *o, const char *path, int binary)
{
    memset(o, 0, sizeof *o);
    if (!path || strcmp(path, "-") == 0) {
        if (binary && isatty(STDOUT_FILENO))
            return vt_seterr("refusing to write binary data to a terminal (use -o FILE or a pipe)");
        o->fp = stdout;
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return vt_seterr("is a directory");
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* A device or FIFO (/dev/null, a named pipe): written in place, since
         * renaming over it would replace the device with a file. */
        o->fp = fopen(path, binary ? "wb" : "w");
        if (!o->fp) return vt_seterr("cannot open output: %s", strerror(errno));
        o->path = vt_xstrdup(path);
        return 0;
    }
    size_t n = strlen(path);
    o->tmp = vt_xmalloc(n + 16);
    /* The temporary file sits beside the target so rename() is atomic; the
     * random suffix keeps parallel runs (xargs -P) from colliding. */
    snprintf(o->tmp, n + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;
        return vt_seterr("cannot create output: %s", strerror(e));
    }
    fchmod(fd, 0666 & ~current_umask());
    o->fp = fdopen(fd, "wb");
    if (!o->fp) {
        close(fd);
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        return vt_seterr("cannot open output: %s", strerror(errno));
    }
    o->path = vt_xstrdup(path);
    return 0;
}

int vt_out_commit(vt_out *o)
{
    if (!o->tmp) {   /* stdout or a device: make write errors visible now */
        int bad = fflush(o->fp) != 0 || ferror(o->fp);
        int e = errno;
        if (o->path) {
            if (fclose(o->fp) != 0) bad = 1;
            free(o->path);
            o->path = NULL;
        }
        o->fp = NULL;
        return bad ? vt_seterr("write error: %s", strerror(e)) : 0;
    }
    int bad = fflush(o->fp) != 0 || ferror(o->fp) || fsync(fileno(o->fp)) != 0;
    int e = errno;
    if (fclose(o->fp) != 0 && !bad) { bad = 1; e = errno; }
    o->fp = NULL;
    if (!bad && rename(o->tmp, o->path) != 0) { bad = 1; e = errno; }
    if (bad) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    o->tmp = o->path = NULL;
    return bad ? vt_seterr("write error: %s", strerror(e)) : 0;
}

void vt_out_abort(vt_out *o)
{
    if (o->fp && o->fp != stdout) fclose(o->fp);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
}

/* ---- standard output ---- */

void vt_ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}

int vt_stdout_failed(const char *prog)
{
    int e = errno;
    if (e == EPIPE) return 1;
    fprintf(stderr, "%s: stdout: write error: %s\n", prog, e ? strerror(e) : "unknown error");
    return 0;
}

/* ---- parsing ---- */

int vt_parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    if (!s || !*s) return vt_seterr("empty number");
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s) return vt_seterr("'%s' is not a whole number", s);
    if (v < min || v > max) return vt_seterr("%s is out of range (%ld to %ld)", s, min, max);
    *out = v;
    return 0;
}

int vt_parse_float(const char *s, double *out)
{
    char *end;
    errno = 0;
    if (!s || !*s) return vt_seterr("empty number");
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v)) return vt_seterr("'%s' is not a number", s);
    *out = v;
    return 0;
}

int vt_parse_floats(const char *s, int n, float *out)
{
    char buf[64];
    int i = 0;
    const char *p = s;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (i >= n || len >= sizeof buf) return vt_seterr("'%s' is not a list of %d numbers", s, n);
        memcpy(buf, p, len);
        buf[len] = 0;
        double v;
        if (vt_parse_float(buf, &v) < 0) return vt_seterr("'%s' is not a list of %d numbers", s, n);
        out[i++] = (float)v;
        if (!c) break;
        p = c + 1;
    }
    if (i != n) return vt_seterr("'%s' is not a list of %d numbers", s, n);
    return 0;
}

char *vt_basename(const char *path)
{
    const char *b = strrchr(path, '/');
    return vt_xstrdup(b ? b + 1 : path);
}

char *vt_stem(const char *path)
{
    char *b = vt_basename(path);
    char *dot = strrchr(b, '.');
    if (dot && dot != b) *dot = 0;
    return b;
}

int vt_ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

double vt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- read-only file mappings ---- */

/* A few mappings live at a time (one model file per tool, a few in
 * tests); a full table only means a mapping is never released. */
#define MAX_MAPS 64
static struct { uintptr_t lo, hi; } maps[MAX_MAPS];
static int nmaps;
static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;

void vt_map_note(const void *base, size_t len)
{
    pthread_mutex_lock(&maps_mu);
    if (base && len && nmaps < MAX_MAPS) {
        maps[nmaps].lo = (uintptr_t)base;
        maps[nmaps++].hi = (uintptr_t)base + len;
    }
    pthread_mutex_unlock(&maps_mu);
}

void vt_map_forget(const void *base)
{
    pthread_mutex_lock(&maps_mu);
    for (int i = 0; i < nmaps; i++)
        if (maps[i].lo == (uintptr_t)base) {
            maps[i] = maps[--nmaps];
            break;
        }
    pthread_mutex_unlock(&maps_mu);
}

int vt_map_noted(const void *p, size_t n)
{
    uintptr_t lo = (uintptr_t)p, hi = lo + n;
    int inside = 0;
    pthread_mutex_lock(&maps_mu);
    for (int i = 0; i < nmaps && !inside; i++)
        inside = p && hi >= lo && lo >= maps[i].lo && hi <= maps[i].hi;
    pthread_mutex_unlock(&maps_mu);
    return inside;
}

void vt_drop_pages(const void *p, size_t n)
{
    static long page;
    if (!page)
        page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
    uintptr_t pg = (uintptr_t)page;
    uintptr_t lo = ((uintptr_t)p + pg - 1) / pg * pg, hi = ((uintptr_t)p + n) / pg * pg;
    if (p && hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void vt_map_release(const void *p, size_t n)
{
    if (vt_map_noted(p, n))
        vt_drop_pages(p, n);
}
