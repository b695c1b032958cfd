/* fuzz_pickle.c - libFuzzer harness: the restricted unpickler, unwrapping
 * and tensor building, with every storage key answered by the same 4 KiB. */
#include <string.h>
#include "../../lib/ckpt/internal.h"

static uint8_t storage[4096];

static int fake_storage(void *ctx, const char *key, const uint8_t **data, size_t *len,
                        int *in_map)
{
    (void)ctx;
    /* vary the length so that "shorter than its size" paths run too */
    *len = strlen(key) % 2 ? sizeof storage : 64;
    *data = storage;
    *in_map = 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < sizeof storage; i++) storage[i] = (uint8_t)(i * 131);
    vt_ckpt_opts o = {.ema = (int)(size % 3) - 1, .keep_half = size & 1};
    vt_frame f;
    vt_frame_init(&f);
    vt_ckpt_from_pickle(data, size, fake_storage, NULL, &o, &f);
    vt_frame_free(&f);
    return 0;
}
