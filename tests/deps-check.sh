#!/bin/sh
# Name the Debian package for each missing build dependency.
missing=
have() { for f in "$@"; do [ -e "$f" ] && return 0; done; return 1; }
have /usr/include/x86_64-linux-gnu/cblas.h /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h /usr/include/openblas/cblas.h || missing="$missing libopenblas-dev"
have /usr/include/jpeglib.h /usr/include/x86_64-linux-gnu/jpeglib.h || missing="$missing libjpeg62-turbo-dev"
have /usr/include/png.h || missing="$missing libpng-dev"
have /usr/include/zlib.h || missing="$missing zlib1g-dev"
have /usr/include/cjson/cJSON.h || missing="$missing libcjson-dev"
if [ -n "$missing" ]; then
  echo "vtkit: missing build dependencies; install them with:" >&2
  echo "  apt-get install$missing" >&2
  exit 1
fi
