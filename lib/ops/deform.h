/* deform.h - deformable point attention (Deformable PVT, as vtpack's
 * bilinear_attention "point" mode): every query token reads a few points
 * of a value map at learned fractional offsets from its own position,
 * bilinearly interpolated, and sums them with softmax weights.
 *
 * A token grid is x[h*w, ld]: token n is pixel (n / w, n % w); head j owns
 * channels j*d .. j*d+d-1.
 *
 * Like lib/ops.h: row-major float32 arrays, caller-owned outputs, nothing
 * allocated. Work is split over query rows; the sum order per output is
 * fixed, so results do not depend on the pool size. */
#ifndef VT_OPS_DEFORM_H
#define VT_OPS_DEFORM_H

#include "ops.h"

/* One bilinear read of channels 0..d-1 of map v[h*w, ld] at the float
 * pixel position (x, y) (integers are token centres, x the column),
 * accumulated as out[c] += wt * sample[c]. Corners (y0,x0), (y0,x0+1),
 * (y0+1,x0), (y0+1,x0+1) with x0 = floor(x), tx = x - x0 (same for y) and
 * weights (1-tx)(1-ty), tx(1-ty), (1-tx)ty, tx ty are summed in that order
 * into the sample; corners outside the map contribute 0 (grid_sample with
 * align_corners=True and zero padding). */
void vt_bilinear_point(float *out, const float *v, int ld, int h, int w, int d,
                       float x, float y, float wt);

/* For each token n = (r, c) and head j (`heads` heads of d channels):
 *   out[n, j] = sum over p < P (in order) of
 *               wts[n, j*P + p] * bilinear(v_j, c + off[n, (j*P+p)*2],
 *                                               r + off[n, (j*P+p)*2 + 1])
 * v[h*w, heads*d] (row stride ldv), off[h*w, heads*P*2] (x then y, in
 * tokens), wts[h*w, heads*P] (already normalised), out[h*w, heads*d]
 * (row stride ldo). */
void vt_deform_attend(vt_pool *p, float *out, int ldo, const float *v, int ldv,
                      const float *off, const float *wts, int h, int w,
                      int heads, int P, int d);

#endif
