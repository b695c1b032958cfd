/* npy.h - NumPy .npy files (versions 1-3, little-endian; Fortran-order arrays are read into C order). */
#ifndef VT_NPY_H
#define VT_NPY_H

#include "frame.h"

/* Parse a .npy held in memory into t (owned copy of the data; t->name NULL).
 * Dtypes: <f4 <f8 <f2 <i8 <i4 <i2 |i1 |u1 |b1. 0 or -1 with vt_error(). */
int vt_npy_parse(const uint8_t *buf, size_t len, vt_tensor *t);
int vt_npy_load(const char *path, vt_tensor *t);
/* Write t as a version 1.0 .npy. 0 or -1. */
int vt_npy_write(FILE *f, const vt_tensor *t);
/* Free a tensor's owned data and name. */
void vt_tensor_free(vt_tensor *t);

#endif
