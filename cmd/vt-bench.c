/* vt-bench - speed, FLOPs, parameters and memory per model and token budget.
 * Not implemented yet: this command only answers --help and --version. */
#include "util.h"

#include <getopt.h>
#include <stdio.h>

static const char usage[] =
    "usage: vt-bench -m MODEL | --arch NAME [options]\n"
    "speed, FLOPs, parameters and memory per model and token budget.\n"
    "Not implemented in this version of vtkit.\n"
    "  -h, --help      this help\n"
    "  -V, --version   version\n";

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (opt == 'h') { fputs(usage, stdout); return 0; }
        if (opt == 'V') { printf("vt-bench (vtkit) %s\n", VT_VERSION); return 0; }
    }
    fprintf(stderr, "vt-bench: not implemented in vtkit %s yet (%d cores seen)\n", VT_VERSION, vt_ncpus());
    return 2;
}
