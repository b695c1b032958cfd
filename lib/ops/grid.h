/* grid.h - ops on token grids that lib/ops.h lacks: GroupNorm(1, C),
 * threaded depthwise 3x3 convolution, stride-r patch gathering, and a
 * stable argsort. A token grid is x[h*w, c]: token n is pixel
 * (n / w, n % w), channels contiguous (NHWC for one image).
 *
 * Like lib/ops.h: row-major float32 arrays, caller-owned outputs, nothing
 * allocated. */
#ifndef VT_OPS_GRID_H
#define VT_OPS_GRID_H

#include "ops.h"

/* nn.GroupNorm(1, c) on one image held as tokens x[n, c], in place: mean
 * and biased variance over all n*c values (accumulated in double, in fixed
 * chunks of rows, so any pool, or none, gives the same bits), then
 * (v - mean) / sqrt(var + eps) * w[ch] + b[ch]. gelu != 0 applies the exact
 * GELU afterwards. */
void vt_groupnorm1_tokens_mt(vt_pool *p, float *x, int n, int c, const float *w,
                             const float *b, float eps, int gelu);

/* Depthwise weights as PyTorch stores them, wt[c, 1, 3, 3], to the
 * tap-major layout the convolution below reads: wt9[9, c]. */
void vt_dw3_weights(float *wt9, const float *wt, int c);

/* Depthwise 3x3 convolution, stride 1, zero padding 1, on tokens
 * x[h*w, c] with tap-major weights wt9[9, c] and bias b[c] (may be NULL):
 *   out = conv(x) + b                      (flags 0)
 *   out = x + conv(x) + b                  (VT_DW3_RESIDUAL)
 * and then GELU on out with VT_DW3_GELU. out must not alias x. Split over
 * output rows on the pool. */
#define VT_DW3_RESIDUAL 1
#define VT_DW3_GELU 2
void vt_dw3_tokens(vt_pool *p, float *out, const float *x, int h, int w,
                   int c, const float *wt9, const float *b, int flags);

/* Tokens x[n, c] to planes out[c, n] (image form). */
void vt_tokens_to_planes(float *out, const float *x, int n, int c);

/* The input of a kernel-r, stride-r, unpadded convolution read from tokens
 * x[h*w, c]: cols[(h/r)*(w/r), c*r*r], one row per output cell (row-major),
 * in the weight's (c, ky, kx) order. Trailing rows/columns that do not fill
 * a whole patch are dropped, as the convolution does. */
void vt_patchify_tokens(float *cols, const float *x, int h, int w, int c, int r);
/* Either patchify (hwc: rows in (ky, kx, c) order, as vt_im2col_tokens
 * makes them; multiply by vt_conv_weight_hwc's weight) split over bands of
 * output rows on the pool; the same result. */
void vt_patchify_tokens_mt(vt_pool *p, float *cols, const float *x, int h, int w, int c,
                           int r, int hwc);

/* idx[n] = the indices of v[n] in ascending order of value; equal values
 * keep their index order (stable) and NaNs go last, as torch.sort puts
 * them. tmp: n ints of scratch. */
void vt_argsort_stable(int *idx, const float *v, int n, int *tmp);

/* idx[n] = the indices of v[n] in ascending order of value, NaNs last, with
 * ties ordered exactly as PyTorch's CPU torch.sort(stable=False) leaves
 * them: it runs libstdc++'s introsort (median-of-three quicksort down to
 * runs of 16, heapsort past a depth of 2*log2(n), then insertion sort) over
 * (value, index) pairs, which is not stable for n > 16. Models whose
 * official code sorts with torch.sort use this to pick the same tokens
 * among equal values. */
void vt_argsort_torch(int *idx, const float *v, int n);

#endif
