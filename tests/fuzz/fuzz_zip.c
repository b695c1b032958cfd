/* fuzz_zip.c - libFuzzer harness: the ZIP reader, then the whole torch.save
 * path (zip + unpickler + tensors) over the same bytes. */
#include <stdlib.h>
#include "../../lib/ckpt/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vt_zip z;
    if (vt_zip_open(&z, data, size) == 0) {
        for (size_t i = 0; i < z.n; i++) {
            const uint8_t *d;
            size_t n;
            uint8_t *owned;
            if (vt_zip_read(&z, i, 64u << 20, &d, &n, &owned) == 0) {
                volatile uint8_t sink = 0;
                for (size_t k = 0; k < n; k += 4096) sink ^= d[k];
                if (n) sink ^= d[n - 1];
                (void)sink;
            }
            free(owned);
        }
        vt_zip_close(&z);
    }
    vt_ckpt_opts o = {.keep_half = size & 1};
    vt_frame f;
    vt_frame_init(&f);
    vt_ckpt_load_zip(data, size, &o, &f);
    vt_frame_free(&f);
    return 0;
}
