/* fuzz_npy.c - libFuzzer harness: .npy parsing (versions 1-3, Fortran
 * order), and a write-back check: what parses must write and parse back to
 * the same dtype, shape and bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "npy.h"

static volatile double sink;   /* keeps the reads */

static void write_back(const vt_tensor *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) abort();
    int rc = vt_npy_write(m, t);
    if (fclose(m) != 0) abort();
    if (rc == 0) {   /* a shape too long for the header is refused, not corrupted */
        vt_tensor u;
        if (vt_npy_parse((const uint8_t *)buf, len, &u) < 0) abort();
        if (u.dtype != t->dtype || u.ndim != t->ndim || u.nbytes != t->nbytes ||
            memcmp(u.shape, t->shape, t->ndim * sizeof *t->shape) ||
            (t->nbytes && memcmp(u.data, t->data, t->nbytes)))
            abort();
        vt_tensor_free(&u);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vt_tensor t;
    if (vt_npy_parse(data, size, &t) < 0) return 0;
    size_t n = (size_t)vt_tensor_numel(&t);
    for (size_t i = 0; i < n && i < 4096; i++) sink += vt_tensor_get(&t, i);
    write_back(&t);
    vt_tensor_free(&t);
    return 0;
}
