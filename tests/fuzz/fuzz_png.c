/* fuzz_png.c - libFuzzer harness: PNG through our libpng wrapper (IHDR
 * size check before libpng, CRC, palette, 16-bit, interlace) and the
 * preprocessing. */
#include "image_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image(data, size);
}
