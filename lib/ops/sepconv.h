/* sepconv.h - ops for convolution-heavy hybrids (GroupMixFormer) that
 * lib/ops.h and lib/ops/grid.h lack: a threaded depthwise k x k
 * convolution of any odd k and stride on token grids whose channels may be
 * a column slice of a wider row, and hard-swish. A token grid is x[h*w, ld]:
 * token n is pixel (n / w, n % w), channel ch at x[n*ld + ch].
 *
 * Like lib/ops.h: row-major float32 arrays, caller-owned outputs, nothing
 * allocated. */
#ifndef VT_OPS_SEPCONV_H
#define VT_OPS_SEPCONV_H

#include "ops.h"

/* Depthwise weights as PyTorch stores them, wt[c, 1, k, k], to the
 * tap-major layout vt_dwk_tokens reads: wtk[k*k, c]. */
void vt_dwk_weights(float *wtk, const float *wt, int c, int k);

/* Output size of a k x k convolution with stride s and padding k/2. */
int vt_dwk_out(int in, int k, int s);

/* Depthwise k x k convolution (k odd), stride s, zero padding k/2, of the
 * channels 0..c-1 of tokens x[h*w, ldx] with tap-major weights wtk[k*k, c]
 * and bias b[c] (may be NULL): out[ho*wo, ldo], ho = vt_dwk_out(h, k, s),
 * wo likewise; only columns 0..c-1 of out are written. out must not alias
 * x. Split over output rows on the pool; the sum order per output is fixed
 * (bias, then taps row-major), so results do not depend on the pool. */
void vt_dwk_tokens(vt_pool *p, float *out, int ldo, const float *x, int ldx,
                   int h, int w, int c, const float *wtk, const float *b,
                   int k, int s);

/* The residual form, as a conditional position encoding x + dwconv(x):
 * out = x + conv(x) + b, stride 1, channels 0..c-1 of rows of ld floats
 * in both x and out (out must not alias x). Sum order per value: x, b,
 * then the taps row-major. */
void vt_dwk_tokens_residual(vt_pool *p, float *out, const float *x, int ld, int h,
                            int w, int c, const float *wtk, const float *b, int k);
/* The same, then the exact GELU on every output value (as vt_gelu), each
 * task on the rows it has just written, while they are in cache. */
void vt_dwk_tokens_residual_gelu(vt_pool *p, float *out, const float *x, int ld, int h,
                                 int w, int c, const float *wtk, const float *b, int k);

/* x[n] = x * min(max(x + 3, 0), 6) / 6, as nn.Hardswish. */
void vt_hswish(float *x, size_t n);
/* Hard-swish of a per-channel affine map from rows to rows (a BatchNorm
 * then the activation, or a strided copy through it): y[i, 0:n] =
 * hswish(x[i, 0:n] * g + b) for i < m, x rows ldx apart, y rows ldy apart;
 * g and b are both [n] or both NULL (y = hswish(x)). y may equal x with
 * ldy = ldx; other overlaps are not allowed. Split over rows on the pool. */
void vt_hswish_rows(vt_pool *p, float *y, int ldy, const float *x, int ldx, int m,
                    int n, const float *g, const float *b);

#endif
