/* stvit.h - what the swin and stvit families (lib/models/swin.c,
 * lib/models/stvit.c) expose beyond logits: named intermediates of the
 * last forward pass (as refgen's stvit fixtures name them) and STViT-R's
 * semantic-token maps.
 *
 * Intermediates (image `batch - 1` of the last forward pass, i.e. run one
 * image to see image 0), float32, token tensors [L, C] raster order:
 *   both:   "patch_embed" [L0, C], "stage{i}_out" [L_i, C_i] (end of stage i
 *           before merging), "stage{i}_merged" [L_{i+1}, C_{i+1}],
 *           "features" [C_4] (pooled, pre-head)
 *   stvit:  "s2_blk{ii}" ([196, C3] for roles swin/recover, [36, C3] for the
 *           semantic roles), "sem_pool_g{g}" [4, 9, C3], "sem_init_attn_g{g}"
 *           [4, nh, 9, 109], "semantic_tokens_g{g}" [36, C3],
 *           "sem_cross_attn_g{g}" [nh, 36, 232], "recover_attn_g{g}"
 *           [nh, 196, 36], "significance_g{g}" [14, 14], "significance"
 *           [14, 14], "assignment_g{g}" [14, 14] (float labels 0..35).
 * Returns NULL (vt_error set) for an unknown name or before a forward. */
#ifndef VT_MODELS_STVIT_H
#define VT_MODELS_STVIT_H

#include <stddef.h>

const float *vt_swin_extra(const void *net, const char *name, size_t *count);
const float *vt_stvit_extra(const void *net, const char *name, size_t *count);

/* STViT-R semantic tokens of image `image` (< the last batch) for group g
 * (0 .. groups-1; g = -1 for the model-level significance):
 *   label[196]: for each 14x14 image token p (raster), the semantic token s
 *     (0..35, grid (s/6, s%6), seeded from image window ((s/6)/3, (s%6)/3))
 *     it reads most from in the recovery block (argmax of the head-mean
 *     attention, first on ties); NULL to skip; not filled for g = -1.
 *   cover[196]: that head-mean attention weight (how strongly), NULL to skip.
 *   sig[196]: significance (B2 attention the semantic tokens put on p, mean
 *     over heads and queries, sums to 1), NULL to skip.
 * Returns the number of groups (>= 1), or -1 with vt_error(). */
int vt_stvit_semantic(const void *net, int image, int g, int *label, float *cover, float *sig);

#endif
