/* fuzz_pnm.c - libFuzzer harness: our own PGM/PPM (P5/P6) reader and the
 * preprocessing. */
#include "image_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image(data, size);
}
