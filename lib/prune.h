/* prune.h - token reduction under a budget: what vt-prune does to a tokens
 * frame and vt-bench --keep does inside a forward pass.
 *
 * A reduction takes one image's tokens (tokens.h) with a score per token
 * and returns at most `budget` tokens, each with the box of the grid cells
 * it stands for. Methods, each named after the idea it carries:
 *
 *   topk        the `budget` highest-scoring tokens, in their input order
 *               (the top-k selection of DynamicViT and EViT);
 *   fuse        the budget-1 highest, plus one token merging all the others
 *               weighted by score (EViT's fused inattentive token);
 *   reallocate  a full grid re-tiled: 4x4 pooled tokens everywhere, split
 *               to 2x2 and then single cells where significance is highest,
 *               as the budget allows (SG-Former's significance-guided
 *               reallocation of fine and coarse tokens);
 *   cluster     `budget` semantic tokens, initialised by pooling the grid
 *               into budget regions and refined by assigning every token to
 *               its nearest one, weighted by score (STViT's semantic
 *               tokens).
 *
 * A budget of at least the token count copies the tokens exactly, whatever
 * the method. Merged tokens carry the sum of their members' CLS attention. */
#ifndef VT_PRUNE_H
#define VT_PRUNE_H

#include "tokens.h"

typedef enum vt_prune_method {
    VT_PRUNE_TOPK, VT_PRUNE_FUSE, VT_PRUNE_REALLOCATE, VT_PRUNE_CLUSTER, VT_PRUNE_COUNT
} vt_prune_method;

const char *vt_prune_method_name(vt_prune_method m);    /* "topk" ... */
int vt_prune_method_from_name(const char *s);           /* -1 if unknown */

/* Cluster refinement rounds (assign, then re-centre). */
#define VT_CLUSTER_ROUNDS 3

/* Tokens out for n in: ceil(keep * n) with keep in (0, 1] (EViT's rule),
 * or min(tokens, n) when tokens > 0; at least 1. */
int vt_budget_tokens(double keep, int tokens, int n);

/* ---- scores ------------------------------------------------------------ */

typedef enum vt_score_source { VT_SCORE_SIGMAP, VT_SCORE_CLS, VT_SCORE_NORM } vt_score_source;

const char *vt_score_name(vt_score_source s);           /* "sigmap", "cls", "norm" */

/* score[n]: the mean of map[mh, mw] over each token's box. The map must be
 * on the tokens' grid (-1 with vt_error() otherwise). */
int vt_score_sigmap(const vt_tokens *t, const float *map, int mh, int mw, float *score);
/* score[n]: the CLS attention recorded with the tokens when there is one
 * (VT_SCORE_CLS), else each token's L2 norm (VT_SCORE_NORM). */
vt_score_source vt_score_tokens(const vt_tokens *t, float *score);

/* ---- reduction ---------------------------------------------------------- */

/* Scratch a reduction reuses: it grows to the largest set seen and is not
 * reallocated after that. */
typedef struct vt_prune_work vt_prune_work;
vt_prune_work *vt_prune_work_new(void);
void vt_prune_work_free(vt_prune_work *w);

/* Reduce in (score[in->n]) to at most budget tokens into out (not in). 0,
 * or -1 with vt_error() (reallocate: a budget below the 4x4 tiling, or
 * tokens that are not a full grid). */
int vt_prune(vt_prune_work *w, const vt_tokens *in, const float *score, int budget,
             vt_prune_method m, vt_tokens *out);

/* ---- a pruned forward pass --------------------------------------------- */

/* Images through blocks 0..after, each image's tokens reduced to
 * vt_budget_tokens(keep) by `method`, scored by the CLS attention of block
 * `after` (else norm), then the rest of the network: the smaller forward
 * pass a split pipe makes, in one process (vt-bench --keep). The state
 * holds every buffer, so passes after the first allocate nothing. */
typedef struct vt_pruned_pass {
    int after;              /* the block the tokens are cut after */
    double keep;            /* fraction kept */
    vt_prune_method method;
    int batch;              /* images per pass */
    vt_tokens *full, *cut;  /* [batch] tokens after `after`, reduced */
    float *score;           /* [score_cap] */
    int score_cap;
    vt_prune_work *work;
} vt_pruned_pass;

void vt_pruned_pass_init(vt_pruned_pass *p, int batch, int after, double keep,
                         vt_prune_method method);
void vt_pruned_pass_free(vt_pruned_pass *p);
/* x[batch, 3, S, S] -> logits[batch, classes]. 0, or -1 with vt_error()
 * (a family without split inference, a block out of range). *tokens, when
 * not NULL, gets the token count of the first image after reduction. */
int vt_pruned_forward(vt_model *m, vt_pruned_pass *p, const float *x, float *logits,
                      int *tokens);

#endif
