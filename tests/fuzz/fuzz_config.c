/* fuzz_config.c - libFuzzer harness: JSON configs as vt-convert --config
 * and model files give them: vt_config_make over any arch (the JSON's own
 * "arch" when it names one, else one picked by the input's size), then the
 * family's sanity checks and parameter table, its analytic cost, and the
 * preprocessing read from the same config. */
#include <cjson/cJSON.h>
#include "model.h"

static const char *pick_arch(const cJSON *j, size_t size)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "arch");
    if (cJSON_IsString(a) && vt_family_find(a->valuestring)) return a->valuestring;
    const vt_family *const *fams = vt_families();
    size_t n = 0;
    for (int i = 0; fams[i]; i++)
        for (int k = 0; fams[i]->archs[k]; k++) n++;
    size_t want = size % n;
    for (int i = 0; fams[i]; i++)
        for (int k = 0; fams[i]->archs[k]; k++)
            if (want-- == 0) return fams[i]->archs[k];
    return "vit";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (!j) return 0;
    cJSON *cfg = vt_config_make(pick_arch(j, size), j);
    if (cfg) {
        const cJSON *fam_name = cJSON_GetObjectItemCaseSensitive(cfg, "family");
        const vt_family *fam = vt_family_find(fam_name->valuestring);
        vt_params ps = {0};
        if (fam->params(cfg, &ps) == 0 && fam->cost) {
            vt_cost c = {0};
            fam->cost(cfg, &c);
        }
        vt_params_free(&ps);
        vt_preproc p;
        vt_config_preproc(cfg, &p);
        cJSON_Delete(cfg);
    }
    cJSON_Delete(j);
    return 0;
}
