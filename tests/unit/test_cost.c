/* test_cost.c - every family's analytic cost (what vt-bench reports as
 * GMACs) against the numbers its authors published, at 224.
 *
 * Our count is the papers' convention: MACs of convolutions, linear layers
 * and the attention matmuls. torch.profiler on the official models counts
 * exactly the same (conv2d + addmm + bmm + mm, halved): DeiT-Ti 1.2537,
 * GroupMixFormer-M 1.3332, SG-Former-S/M/B 4.7839/7.4268/15.5428 G.
 * Papers print one decimal ("FLOPs" that are MACs); three rows miss by more
 * than 3% for known reasons, tested with their own bound:
 *  - DeiT-Ti: 1.254 printed as 1.3 (rounding alone is 3.8% at this size);
 *  - GroupMixFormer-M: fvcore, which the authors used, adds norm terms
 *    (1.35 G, spec groupmix.md), printed as 1.4;
 *  - GroupMixFormer-L: the released yaml is not the paper's L (71.8M
 *    parameters against the paper's 70.3M; spec groupmix.md). */
#include <math.h>
#include <stdio.h>

#include "model.h"
#include "tap.h"
#include "util.h"

static const struct {
    const char *arch;
    double paper;       /* GMACs as published */
    double bound;       /* relative */
    const char *source;
} rows[] = {
    {"deit_tiny_patch16_224", 1.3, 0.04, "DeiT table 1 (rounded to 0.1)"},
    {"deit_small_patch16_224", 4.6, 0.03, "DeiT table 1"},
    {"deit_base_patch16_224", 17.6, 0.03, "DeiT table 1"},
    {"vit_base_patch16_224", 17.6, 0.03, "DeiT table 1 (ViT-B/16)"},
    {"swin_tiny_patch4_window7_224", 4.5, 0.03, "Swin table 1"},
    {"swin_small_patch4_window7_224", 8.7, 0.03, "Swin table 1"},
    {"swin_base_patch4_window7_224", 15.4, 0.03, "Swin table 1"},
    {"stvit_r_swin_s", 5.826, 0.03, "STViT-R log/small.txt (fvcore)"},
    {"stvit_r_swin_b", 10.264, 0.03, "STViT-R log/base.txt (fvcore)"},
    {"pale_tiny", 4.2, 0.03, "Pale table"},
    {"pale_small", 9.0, 0.03, "Pale table"},
    {"pale_base", 15.6, 0.03, "Pale table"},
    {"groupmixformer_m", 1.4, 0.05, "GroupMixFormer table (fvcore, norms, rounded)"},
    {"groupmixformer_t", 3.7, 0.03, "GroupMixFormer table"},
    {"groupmixformer_s", 5.2, 0.03, "GroupMixFormer table"},
    {"groupmixformer_b", 17.6, 0.03, "GroupMixFormer table"},
    {"groupmixformer_l", 36.1, 0.06, "GroupMixFormer table (not the released yaml)"},
    {"sgformer_s", 4.8, 0.03, "SG-Former table"},
    {"sgformer_m", 7.5, 0.03, "SG-Former table"},
    {"sgformer_b", 15.6, 0.03, "SG-Former table"},
};

int main(void)
{
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        const vt_family *fam = vt_family_find(rows[i].arch);
        cJSON *cfg = fam ? vt_config_make(rows[i].arch, NULL) : NULL;
        vt_cost c;
        int rc = cfg && fam->cost ? fam->cost(cfg, &c) : -1;
        double g = rc == 0 ? c.macs / 1e9 : NAN, off = (g - rows[i].paper) / rows[i].paper;
        ok(rc == 0 && fabs(off) <= rows[i].bound, "%s: %.3f GMACs, %s %.3g (%+.2f%%)",
           rows[i].arch, g, rows[i].source, rows[i].paper, 100 * off);
        cJSON_Delete(cfg);
    }
    /* each cost's parts add up to it (a family without one yet is skipped:
     * vt-bench shows nan for it) */
    const vt_family *const *fams = vt_families();
    for (int f = 0; fams[f]; f++)
        for (int a = 0; fams[f]->archs[a]; a++) {
            if (!fams[f]->cost) {
                skip(fams[f]->archs[a], "the family counts no cost yet");
                continue;
            }
            cJSON *cfg = vt_config_make(fams[f]->archs[a], NULL);
            vt_cost c;
            int rc = cfg ? fams[f]->cost(cfg, &c) : -1;
            double sum = 0;
            for (int k = 0; rc == 0 && k < c.nparts; k++)
                sum += c.part[k].macs;
            ok(rc == 0 && c.macs > 0 && c.nparts <= VT_COST_PARTS && fabs(sum - c.macs) < 1e-6 * c.macs,
               "%s: cost in %d parts", fams[f]->archs[a], rc ? 0 : c.nparts);
            cJSON_Delete(cfg);
        }
    return tap_done();
}
