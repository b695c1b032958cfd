/* test_size.c - running a model at another input side (vt-bench --size):
 * the config keeps the side its position embedding was made for, so the
 * weights still fit and the family resamples (vit) or refuses (sgformer). */
#include <string.h>

#include "model.h"
#include "tap.h"
#include "util.h"

/* The shape params() expects for pos_embed, as "d0 d1 d2". */
static const char *pos_shape(const cJSON *cfg, char *buf, size_t n)
{
    vt_params ps = {0};
    snprintf(buf, n, "refused");
    if (vt_family_find("vit")->params(cfg, &ps) == 0)
        for (int i = 0; i < ps.n; i++)
            if (strcmp(ps.p[i].name, "pos_embed") == 0)
                snprintf(buf, n, "%lld %lld %lld", (long long)ps.p[i].shape[0],
                         (long long)ps.p[i].shape[1], (long long)ps.p[i].shape[2]);
    vt_params_free(&ps);
    return buf;
}

int main(void)
{
    char b[64];
    cJSON *cfg = vt_config_make("deit_tiny_patch16_224", NULL);
    vt_config_set_size(cfg, 224);
    ok(!cJSON_GetObjectItem(cfg, "pos_embed_size"), "the model's own side changes nothing");
    vt_config_set_size(cfg, 384);
    ok(vt_cfg_int(cfg, "img_size", 0) == 384 && vt_cfg_int(cfg, "pos_embed_size", 0) == 224,
       "384: img_size 384, pos_embed_size 224");
    ok(strcmp(pos_shape(cfg, b, sizeof b), "1 197 192") == 0, "the stored pos_embed still fits: %s", b);
    vt_config_set_size(cfg, 256);
    ok(vt_cfg_int(cfg, "img_size", 0) == 256 && vt_cfg_int(cfg, "pos_embed_size", 0) == 224,
       "again, 256: pos_embed_size stays 224");
    cJSON_Delete(cfg);

    cfg = vt_config_make("sgformer_s", NULL);
    vt_params ps = {0};
    vt_config_set_size(cfg, 448);
    ok(vt_family_find("sgformer")->params(cfg, &ps) < 0 && strstr(vt_error(), "runs at 224 only"),
       "sgformer at 448 with a 224 pos_embed: %s", vt_error());
    vt_params_free(&ps);
    cJSON_Delete(cfg);
    return tap_done();
}
