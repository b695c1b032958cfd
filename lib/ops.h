/* ops.h - the inference core: small operations over plain float arrays,
 * and the thread pool that runs them.
 *
 * Every op takes row-major float32 arrays whose shapes are given in its
 * comment, writes into caller-owned output, and allocates nothing: model
 * families allocate a run state once per (batch, resolution) and call these.
 *
 * Threading model (one for everything): OpenBLAS is pinned to 1 thread
 * (openblas_set_num_threads(1), done by vt_pool_create) and parallelism
 * comes only from our own pool, which splits work over output columns of a
 * matrix product, rows, attention (image, head) pairs and images. Why: the
 * shapes of a ViT are small and many (per-head attention products are
 * 197x197x64); OpenBLAS's own threading splits each such product and
 * synchronises per call, which drops them to ~60% of the sgemm peak, while
 * giving each of our threads whole single-threaded products keeps every
 * shape near the peak. Having one threading model also means the two can
 * never oversubscribe the cores (T pool threads, each running a 1-thread
 * BLAS). Large products (qkv, mlp) are split by output columns so each
 * thread streams only its own slice of the weight matrix.
 *
 * Kernels: model weights are packed once (vt_wpack, or implicitly for
 * weights in a read-only range, vt_pool_readonly) and multiplied by our
 * own AVX-512 kernel with bias, GELU and residual fused (lib/ops/gemm.c);
 * attention is fused (lib/ops/attention.c). Which kernels run is decided
 * at run time (lib/ops/cpu.h: cpuid, VT_CPU=portable|avx512 caps it); a
 * CPU without AVX-512 runs the portable code and OpenBLAS.
 * vt_pool_create also makes Debian's OpenBLAS (0.3.21, which does not know
 * this Xeon and falls back to SSE3 kernels at ~30 GFLOP/s) use its AVX-512
 * kernels when OPENBLAS_CORETYPE is unset (see pool.c). */
#ifndef VT_OPS_H
#define VT_OPS_H

#include <stddef.h>
#include <stdint.h>

/* ---- thread pool ------------------------------------------------------ */

typedef struct vt_pool vt_pool;
/* fn runs task `task` (0..ntasks-1) on pool thread `thread` (0..size-1). */
typedef void (*vt_task_fn)(void *ctx, int task, int thread);

/* A pool of n threads in all (the caller is thread 0; n-1 workers are
 * started). n <= 0 means the online cores. Also sets OpenBLAS to 1 thread.
 * Returns NULL with vt_error() set when threads cannot be started. */
vt_pool *vt_pool_create(int n);
void vt_pool_free(vt_pool *p);
int vt_pool_size(const vt_pool *p);           /* 1 for a NULL pool */
/* Run ntasks tasks and wait for all of them. p may be NULL (serial). Not
 * reentrant: a task must not call vt_pool_run on the same pool. Tasks go to
 * whichever thread is free (the caller takes its share), so a thread the
 * machine does not run at the moment only means the others do more. */
void vt_pool_run(vt_pool *p, int ntasks, vt_task_fn fn, void *ctx);
/* The same, told the job's total work in flops (about 2 per multiply-add,
 * 1 per elementwise operation): jobs below VT_POOL_MIN_WORK run on the
 * caller alone, since handing tasks to a worker costs about a microsecond
 * and waking a sleeping one tens of microseconds. Same tasks either way,
 * so results do not depend on it. */
#define VT_POOL_MIN_WORK 100e3
void vt_pool_run_work(vt_pool *p, int ntasks, vt_task_fn fn, void *ctx,
                      double work);

/* Declare [base, base+len) read-only while the pool lives (a model's
 * weights, mapped read-only from its file). vt_linear then multiplies by
 * weights in such a range through a copy packed on first use
 * (vt_pool_wpack): packed once per model, not per call. Up to 4 ranges. */
void vt_pool_readonly(vt_pool *p, const void *base, size_t len);
/* The packed copy of w[n,k] if it lies in a read-only range of p (packed
 * now if it is new), else NULL. Caller thread only (not from tasks). */
struct vt_wpack;
const struct vt_wpack *vt_pool_wpack(vt_pool *p, const float *w, int n, int k);
/* Hand p a pack made by the caller (of a weight from any dtype: BF16 bits,
 * a widened or reordered copy) under key, the weight's address in its
 * file: from then on vt_pool_wpack(p, key, n, k), and so vt_linear(p, ...,
 * key, ...), use it, and p frees it. key then is a handle only, never read
 * as floats; a pointer into its key_bytes other than key itself aborts
 * vt_pool_wpack (a slice of a weight packed whole). The cached pack (its
 * address stable while p lives), or NULL with vt_error() (pk freed). */
const struct vt_wpack *vt_pool_wpack_put(vt_pool *p, const void *key, struct vt_wpack *pk,
                                         size_t key_bytes);
/* The pack cached under key [n,k], or NULL: no packing. */
const struct vt_wpack *vt_pool_wpack_find(const vt_pool *p, const void *key, int n, int k);
/* Pack w[n,k] into p's cache now, at load, not on first use: found there,
 * packed from a read-only range, or else packed and handed over (then w
 * must outlive p). 0, or -1 with vt_error(); 0 for a NULL pool. */
int vt_pool_wpack_load(vt_pool *p, const float *w, int n, int k);
/* A 64-byte aligned buffer of at least bytes that p owns (grown when too
 * small, its contents then lost), for one operation's intermediates that
 * its tasks share; NULL for a NULL pool or out of memory. Caller thread
 * only, and valid until the next call. */
void *vt_pool_scratch(vt_pool *p, size_t bytes);

/* ---- elementwise and normalization ------------------------------------ */

/* y[n] += x[n] */
void vt_add(float *y, const float *x, size_t n);
/* x[m,n] += b[n] for every row */
void vt_add_bias(float *x, const float *b, int m, int n);
/* x[n] = gelu(x) with the exact erf form, as nn.GELU() */
void vt_gelu(float *x, size_t n);
/* exp with max relative error ~2e-7, vectorizable (used by softmax) */
float vt_expf(float x);
/* erf with max absolute error ~2e-7, vectorizable (used by gelu) */
float vt_erff(float x);
/* Softmax over each row of x[m,n], in place. */
void vt_softmax(float *x, int m, int n);
/* Softmax over each column of x[m, ld] (columns 0..n-1; over the m rows,
 * as torch's softmax(dim=-2)), in place. */
void vt_softmax_cols(float *x, int m, int n, int ld);
/* y[m,n] = LayerNorm(x[m,n]) * w[n] + b[n], biased variance as PyTorch.
 * y may equal x. */
void vt_layernorm(float *y, const float *x, const float *w, const float *b,
                  int m, int n, float eps);
/* The same split over rows on the pool. */
void vt_layernorm_mt(vt_pool *p, float *y, const float *x, const float *w,
                     const float *b, int m, int n, float eps);

/* dst[n] = src[n], split over the pool (a model keeping an intermediate
 * of megabytes: one thread copying it is serial time between products). */
void vt_copy(vt_pool *p, float *dst, const float *src, size_t n);
/* y[m,n] += g[n] * x[m,n] for every row (a layer-scaled residual, as
 * x = x + gamma * f(x)), split over rows on the pool. */
void vt_add_scaled_rows(vt_pool *p, float *y, const float *x, const float *g, int m, int n);

/* ---- matrix products -------------------------------------------------- */

/* y[m,n] = beta*y + x[m,k] @ w[n,k]^T + b[n] (b may be NULL), with the
 * weight as PyTorch stores it ([out,in]). gelu != 0 applies GELU after the
 * bias. Split over output columns (or rows when m is the larger side) on
 * the pool. beta is 0 (overwrite) or 1 (accumulate: fused residual). */
void vt_linear(vt_pool *p, float *y, const float *x, const float *w,
               const float *b, int m, int k, int n, float beta, int gelu);

/* A linear layer's weight W[n,k] ([out,in]) packed once, at load, for
 * vt_linear_packed (lib/ops/gemm.c). F32 weights: on AVX-512 CPUs into
 * panels of 32 output features, elsewhere kept as given (raw, used through
 * vt_linear; raw must then outlive the pack). BF16 weights (the raw bits,
 * as a model file stores them): always panels, multiplied with
 * AVX512-FP16 (fp16 products, summed in f32), AVX512-BF16, AVX-512 or
 * portable kernels chosen at run time.
 * Once in panels, a weight that lies in a mapped model file (vt_map_note,
 * util.h) has its pages there given back: the products never read raw
 * again, and anything else that does faults it back from the page cache
 * (correct, but it costs page faults and the memory again). */
typedef struct vt_wpack {
    int n, k;
    int bf16;           /* from BF16 weights: panels hold bf16 ... */
    int fp16;           /* ... or, on AVX512-FP16 CPUs, fp16 (lib/ops/gemm.c) */
    const float *raw;   /* F32 weights as given, or NULL */
    void *data;         /* the panels, or NULL */
    float *owned;       /* raw when the pack owns it (vt_wpack_init_take) */
} vt_wpack;
int vt_wpack_init(vt_wpack *w, const float *raw, int n, int k);  /* 0 or -1 */
int vt_wpack_init_bf16(vt_wpack *w, const uint16_t *raw, int n, int k);
/* vt_wpack_init of a weight the caller made in memory from vt_xmalloc (a
 * reordered copy of a file's weight): the pack takes it over, freeing it
 * at once when it is in panels, else keeping it as raw until
 * vt_wpack_free. A reordering family then holds one copy of the weight,
 * not two (with its source in the file given back by vt_map_release).
 * On failure raw is freed too. */
int vt_wpack_init_take(vt_wpack *w, float *raw, int n, int k);
/* The same with the panels packed in parallel on p (may be NULL): what a
 * model's load does, as packing is most of the time before its first
 * image. */
int vt_wpack_init_pool(vt_pool *p, vt_wpack *w, const float *raw, int n, int k);
int vt_wpack_init_bf16_pool(vt_pool *p, vt_wpack *w, const uint16_t *raw, int n, int k);
void vt_wpack_free(vt_wpack *w);
/* vt_linear with a packed weight: y[m,n] = beta*y + act(x[m,k] W^T + b),
 * act GELU when gelu != 0; the bias, GELU and residual are applied to
 * each register tile before it is stored. Note the order with beta = 1:
 * y + act(xW^T + b), as PyTorch's x = x + layer(x). */
void vt_linear_packed(vt_pool *p, float *y, const float *x, const vt_wpack *w,
                      const float *b, int m, float beta, int gelu);

/* Multi-head self-attention core for `batch` sequences of t tokens.
 *   qkv[batch*t, 3*d]: per token q|k|v, each heads x dh (d = heads*dh), as
 *   timm's Attention.qkv produces; out[batch*t, d] gets softmax(q k^T *
 *   scale) v with heads concatenated. scratch: vt_attention_scratch floats.
 *   What it keeps of the softmax (both optional, for significance maps):
 *   cls [batch, heads, t]: attention row of token 0 per head;
 *   maps [batch, heads, t, t]: every head's whole attention matrix.
 * Fused (lib/ops/attention.c): scores are made, normalized and used block
 * by block; the [t, t] matrix is never stored unless maps asks for it. */
size_t vt_attention_scratch(const vt_pool *p, int t, int dh);
void vt_attention(vt_pool *p, float *out, const float *qkv, int batch, int t,
                  int heads, int dh, float scale, float *scratch, float *cls,
                  float *maps);

/* ---- convolutions ----------------------------------------------------- */

/* im2col for one image x[c,h,w]: cols[ho*wo, c*k*k], one row per output
 * position in the weight's (c, ky, kx) order, zeros outside the image. */
void vt_im2col(float *cols, const float *x, int c, int h, int w, int k,
               int s, int pad);
/* im2col for one image of tokens x[h*w, c] (NHWC): cols[ho*wo, k*k*c],
 * one row per output position in (ky, kx, c) order (a weight [o, k, k, c],
 * i.e. PyTorch's [o, c, k, k] permuted), zeros outside the image. Each tap
 * is one run of c floats, so no transpose to planes is needed. */
void vt_im2col_tokens(float *cols, const float *x, int h, int w, int c, int k,
                      int s, int pad);
/* The same two split over output rows on the pool p (may be NULL). */
void vt_im2col_mt(vt_pool *p, float *cols, const float *x, int c, int h, int w,
                  int k, int s, int pad);
void vt_im2col_tokens_mt(vt_pool *p, float *cols, const float *x, int h, int w,
                         int c, int k, int s, int pad);
/* vt_im2col's columns (the weight's own (c, ky, kx) order) made from
 * tokens x[h*w, c], split over output rows on p: a convolution of tokens
 * without transposing them to planes first or reordering its weight. */
void vt_im2col_tokens_chw_mt(vt_pool *p, float *cols, const float *x, int h, int w,
                             int c, int k, int s, int pad);
/* A convolution weight wt[o, c, k, k] reordered to out[o, k, k, c], the
 * column order of vt_im2col_tokens. */
void vt_conv_weight_hwc(float *out, const float *wt, int o, int c, int k);
/* Convolution of tokens x[h*w, c] (one image, NHWC) by a packed weight
 * wt [o, k*k*c] in vt_im2col_tokens's column order (vt_conv_weight_hwc of
 * PyTorch's [o, c, k, k]), stride s, zero padding pad, plus b[o] (may be
 * NULL): out[ho*wo, o]. Split over bands of output rows on the pool; each
 * task builds its band's columns in its thread's part of cols
 * (vt_conv_tokens_scratch floats, a few hundred KB per thread, not the
 * whole image's) and multiplies them while they are in cache. Each output
 * is the same sum whatever the bands and threads. */
size_t vt_conv_tokens_scratch(const vt_pool *p, int w, int c, int k, int s, int pad);
void vt_conv_tokens(vt_pool *p, float *out, const float *x, int h, int w, int c,
                    const vt_wpack *wt, const float *b, int k, int s, int pad,
                    float *cols);
/* Convolution of x[c,h,w] (one image, NCHW) by w[o,c,k,k] with stride s and
 * zero padding pad, written as tokens out[ho*wo, o] (+ b[o]), the layout a
 * transformer uses after patch embedding. cols: scratch of
 * ho*wo*c*k*k floats. ho = (h + 2*pad - k)/s + 1, same for wo. */
void vt_conv2d_tokens(vt_pool *p, float *out, const float *x, int c, int h,
                      int w, const float *wt, const float *b, int o, int k,
                      int s, int pad, float *cols);
/* Same convolution with NCHW output out[o, ho, wo]. cols as above. */
void vt_conv2d(vt_pool *p, float *out, const float *x, int c, int h, int w,
               const float *wt, const float *b, int o, int k, int s, int pad,
               float *cols);

/* ---- pooling and resampling ------------------------------------------- */

/* out[c] = mean over rows of x[n, c] */
void vt_mean_rows(float *out, const float *x, int n, int c);
/* Average pooling x[c,h,w] -> out[c,ho,wo], kernel k, stride s, no padding
 * (as nn.AvgPool2d(k, s)). */
void vt_avgpool2d(float *out, const float *x, int c, int h, int w, int k, int s);

/* Resampling planes x[c,h,w] -> out[c,oh,ow] as torch F.interpolate. */
void vt_interp_nearest(float *out, const float *x, int c, int h, int w,
                       int oh, int ow);
void vt_interp_bilinear(float *out, const float *x, int c, int h, int w,
                        int oh, int ow, int align_corners);
/* mode='bicubic' (a = -0.75). antialias=1 gives F.interpolate(...,
 * antialias=True) (PIL-style a = -0.5 filter widened when downscaling),
 * which timm's resample_abs_pos_embed uses; align_corners is ignored then. */
void vt_interp_bicubic(float *out, const float *x, int c, int h, int w,
                       int oh, int ow, int align_corners, int antialias);

/* ---- model extras ----------------------------------------------------- */

struct vt_model;
/* CLS attention of the last block of a vit-family model from its last
 * forward pass, as timm's attn[:, :, 0, 1:].mean(heads): [batch, n] with
 * n = t - 1 (the distillation token, when there is one, first, then the
 * gh x gw patch grid in row-major order: the last gh*gw entries). NULL
 * (with vt_error()) for other families or before a forward pass. Design
 * note: a "run until block L" variant (issue 10) will reuse the same run
 * state; only the block range of the loop changes. */
const float *vt_vit_cls_attention(const struct vt_model *m, int *batch,
                                  int *n, int *gh, int *gw);
/* Keep, from the next forward pass on, the attention of blocks
 * 0..blocks-1 of a vit-family model averaged over heads (0: stop keeping).
 * For attention rollout; it costs (heads + blocks) t^2 floats per image of
 * memory and a pass over them per block, nothing when off. 0 or -1. */
int vt_vit_keep_attention(const struct vt_model *m, int blocks);
/* The kept attention of block `block` in the last forward pass: softmax
 * probabilities averaged over the heads, [batch, t, t] (row: query; token
 * order cls, (dist), then the patch grid row-major). NULL with vt_error()
 * when that block is not kept or before a forward pass. */
const float *vt_vit_attention(const struct vt_model *m, int block, int *batch,
                              int *t);

#endif
