/* groupmix.h - what a GroupMixFormer net (lib/models/groupmix.c) exposes
 * beyond logits, for tests and significance maps. Everything refers to the
 * LAST image of the last forward pass (run one image to see image b).
 *
 * Layouts: token grids are [N, C] row-major, token n = y*W + x (pixel
 * (n / W, n % W)), channels contiguous; the official NCHW map is its
 * transpose. */
#ifndef VT_MODELS_GROUPMIX_H
#define VT_MODELS_GROUPMIX_H

/* Named intermediates (the conformance fixtures' extras):
 *   "stem"             [N0, C1]  conv stem output (grid H0 x W0)
 *   "stage1".."stage4" [Ni, Ci]  stage outputs
 *   "pooled"           [1, C4]   norm4 (BatchNorm) then mean: head input
 * and, only after vt_groupmix_record(net, 1), of stage 1 block 0:
 *   "s1b0_attn_in"     [N1, C1]  LayerNorm 1 output (attention input)
 *   "s1b0_qkv_proxies" [3*N1, Ca] Q^, K^, V^ after the aggregators, one
 *                      after the other, each [N1, Ca] with channel
 *                      head*d + lane (Ca = 4/5 C1, d = Ca/8); the
 *                      official tensor [3, B, 8, N, d] is its regrouping
 *   "s1b0_local"       [N1, C1/5] non-attention branch
 *   "s1b0_attn_out"    [N1, C1]  after att.proj, before the residual add
 * Returns the data (owned by the net) with rows/cols and the grid h x w
 * (h = w = 1 for "pooled"), or NULL with vt_error(). */
const float *vt_groupmix_extra(const void *net, const char *name, int *rows,
                               int *cols, int *h, int *w);

/* Keep the stage-1 block-0 intermediates above (costs ~6 N1 C1 floats). */
int vt_groupmix_record(void *net, int on);

/* The significance map of vt-sigmap --method attention: the mean attention
 * each token receives in the LAST block of the last stage, [H4 * W4].
 * GroupMixFormer's attention is factorized (softmax over tokens of K, no
 * N x N map); the implicit map of head h is A_h = scale * Q^_h K~_h^T
 * (K~ = softmax of K^ over tokens, per lane), so
 *   map[n] = 1/8 sum_h 1/N sum_q A_h[q, n] = 1/8 sum_h scale * qbar_h . K~_h[n]
 * with qbar_h the mean query of head h: linear in N, always recorded. Its
 * values sum (over n) to the mean over heads of scale * sum(qbar_h) and may
 * be negative (Q^ is not a probability). *h, *w are filled even before the
 * first forward pass (which returns NULL). */
const float *vt_groupmix_sigmap(const void *net, int *h, int *w);

#endif
