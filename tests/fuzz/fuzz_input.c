/* fuzz_input.c - libFuzzer harness: one input file as every tool takes it
 * (vt_input_frames): recognized by content, then decoded as an image, a
 * .npy or a frame stream, and turned into frames. The bytes are served
 * from a memfd so the real open/sniff/rewind path runs. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include "input.h"

static int take(vt_frame *f, void *ctx)
{
    int *n = ctx;
    vt_frame_free(f);
    free(f);
    return ++*n < 64 ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0 && (fd = memfd_create("fuzz-input", 0)) < 0) abort();
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    vt_input_opts o;
    vt_input_opts_default(&o);
    o.pre.size = 4 + (int)(size % 29);
    o.decode.max_pixels = 1 << 22;
    int n = 0;
    vt_input_frames(path, &o, take, &n);
    return 0;
}
