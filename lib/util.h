/* util.h - errors, allocation, atomic output files, small helpers.
 *
 * Library functions report failure by returning a negative value (or NULL)
 * after setting a one-line, thread-local message with vt_seterr(); the
 * command prefixes it with the program and file name. */
#ifndef VT_UTIL_H
#define VT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VT_VERSION "0.1.0"

#if defined(__GNUC__)
#define VT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VT_PRINTF(a, b)
#endif

/* Set the calling thread's error message (printf-style); returns -1.
 * errno is left as it was, so a caller can still test it (EPIPE). */
int vt_seterr(const char *fmt, ...) VT_PRINTF(1, 2);
/* The calling thread's last error message ("" if none). */
const char *vt_error(void);

/* Allocation that never returns NULL: prints "out of memory" and exits 1.
 * Use only for sizes already checked against limits. */
void *vt_xmalloc(size_t n);
void *vt_xcalloc(size_t n, size_t size);
void *vt_xrealloc(void *p, size_t n);
char *vt_xstrdup(const char *s);

/* Overflow-checked arithmetic: return 0 on success, -1 on overflow. */
int vt_mul_size(size_t a, size_t b, size_t *out);
int vt_add_size(size_t a, size_t b, size_t *out);

/* Read a whole file (at most max bytes) into a malloc'd buffer. */
int vt_read_file(const char *path, size_t max, uint8_t **data, size_t *len);
/* Read all of a stream (at most max bytes). */
int vt_read_stream(FILE *f, size_t max, uint8_t **data, size_t *len);

/* Atomic output: data goes to a temporary file beside `path` that is
 * renamed over it on vt_out_commit(); vt_out_abort() removes it. With
 * path NULL or "-" the output is stdout, refused when stdout is a terminal
 * and binary is set (like gzip). */
typedef struct vt_out {
    FILE *fp;
    char *path;     /* final path, NULL for stdout */
    char *tmp;      /* temporary path, NULL for stdout */
} vt_out;
int vt_out_open(vt_out *o, const char *path, int binary);
int vt_out_commit(vt_out *o);   /* flush, fsync, rename; reports write errors */
void vt_out_abort(vt_out *o);

/* Standard output. A tool whose output pipe's reader has gone (EPIPE, as
 * in `vt-classify ... | head -1`) stops at once without a message and exits
 * with VT_EXIT_PIPE: 141, what the shell shows for a filter ended by
 * SIGPIPE, so the status is the same however the parent left the signal. */
#define VT_EXIT_PIPE 141
/* Make a closed pipe an EPIPE write error (SIGPIPE ignored). */
void vt_ignore_sigpipe(void);
/* Call right after a write to stdout failed, errno still the write's:
 * returns 1 for EPIPE (say nothing), else prints "prog: stdout: write
 * error: reason" and returns 0. */
int vt_stdout_failed(const char *prog);

/* Parse numbers strictly: the whole string, in range. 0 ok, -1 error. */
int vt_parse_int(const char *s, long min, long max, long *out);
int vt_parse_float(const char *s, double *out);
/* Comma-separated floats, exactly n of them. */
int vt_parse_floats(const char *s, int n, float *out);

/* The file name without directories ("a/b/c.jpg" -> "c.jpg") and the stem
 * ("c"); results are malloc'd. */
char *vt_basename(const char *path);
char *vt_stem(const char *path);

/* Online cores, at least 1. */
int vt_ncpus(void);
/* Monotonic clock in seconds. */
double vt_now(void);

/* ---- read-only file mappings ------------------------------------------
 * A model's weights are used in place from its mapped file, and most are
 * read once: packed into another layout at load (lib/ops/gemm.c) or
 * hashed. Their pages can then go back to the kernel, which keeps peak RSS
 * near one copy of the weights instead of two. Only pages of a mapping
 * noted here are ever dropped: a read-only, never written MAP_PRIVATE
 * mapping of a file, where a later read simply faults the page back in
 * from the page cache (dropping pages of anonymous memory would zero
 * them). vt_frame_map notes its mappings and vt_frame_free forgets them. */
void vt_map_note(const void *base, size_t len);
void vt_map_forget(const void *base);
/* 1 when [p, p+n) lies inside one noted mapping. */
int vt_map_noted(const void *p, size_t n);
/* Give back the pages wholly inside [p, p+n) when it lies inside a noted
 * mapping (madvise MADV_DONTNEED); nothing otherwise. */
void vt_map_release(const void *p, size_t n);
/* The same without the check: the caller knows [p, p+n) is such a
 * mapping. */
void vt_drop_pages(const void *p, size_t n);

#endif
