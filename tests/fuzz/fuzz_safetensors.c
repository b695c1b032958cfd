/* fuzz_safetensors.c - libFuzzer harness: safetensors parsing (the lead's
 * vt_frame_parse) and the checkpoint path's dtype fixing on top of it. */
#include "../../lib/ckpt/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vt_frame f;
    size_t used;
    vt_frame_init(&f);
    if (vt_frame_parse(data, size, &f, 0, &used) == 0) {
        vt_ckpt_opts o = {.keep_half = size & 1};
        vt_ckpt_fix_frame(&f, &o);
    }
    vt_frame_free(&f);
    return 0;
}
