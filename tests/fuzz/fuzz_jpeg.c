/* fuzz_jpeg.c - libFuzzer harness: JPEG through our libjpeg wrapper (error
 * longjmps, truncation, CMYK, size limit, EXIF) and the preprocessing; the
 * EXIF/TIFF orientation reader also gets the raw bytes. */
#include "image_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    volatile int orientation = vt_exif_orientation(data, size);
    (void)orientation;
    return fuzz_image(data, size);
}
