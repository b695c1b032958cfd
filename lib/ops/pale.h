/* pale.h - pale-shaped attention (Pale Transformer, Wu et al. 2022): self
 * attention inside interlaced row groups or interlaced column groups of a
 * token grid. A token grid is x[h*w, c]: token n is pixel (n / w, n % w).
 *
 * Rows: with N = ceil(h / s) groups, group g holds the rows
 * {g, g+N, g+2N, ...} < h and all w columns of them (at most s rows; fewer
 * when h % s != 0, which is the reference's zero padding to N*s rows with
 * the padded tokens masked out as keys and dropped as queries). Columns:
 * the same on the transposed grid, M = ceil(w / s) groups of columns.
 *
 * Like lib/ops.h: row-major float32 arrays, caller-owned outputs, nothing
 * allocated. Tasks are (head, group) pairs whose boundaries do not depend
 * on the number of threads, so results are bitwise the same for any pool. */
#ifndef VT_OPS_PALE_H
#define VT_OPS_PALE_H

#include "ops.h"

#define VT_PALE_ROWS 0      /* groups of interlaced rows */
#define VT_PALE_COLS 1      /* groups of interlaced columns */

/* Number of groups along an axis of n cells with pale size s: ceil(n/s). */
int vt_pale_groups(int n, int s);

/* Token indices (raster, y*w + x) of group g of the given axis, written to
 * idx (at most vt_pale_max_tokens entries); returns how many. */
int vt_pale_group_tokens(int *idx, int h, int w, int s, int axis, int g);

/* Tokens of the largest group of that axis. */
int vt_pale_max_tokens(int h, int w, int s, int axis);

/* Floats of scratch vt_pale_attend needs. */
size_t vt_pale_scratch(const vt_pool *p, int h, int w, int s, int axis, int d);

/* For each of `heads` heads (head j reads channels j*d .. j*d+d-1 of each
 * array): out = softmax((scale * q) k^T) v over the tokens of each group,
 * every token attending only to its own group. q, k, v [h*w, .] with row
 * stride ld; out [h*w, .] with row stride ldo (written for every token). */
void vt_pale_attend(vt_pool *p, int heads, const float *q, const float *k,
                    const float *v, int ld, float *out, int ldo, int h, int w,
                    int s, int axis, int d, float scale, float *scratch);

#endif
