#!/bin/bash
# Build the checkpoint fuzzers with clang (libFuzzer + ASan + UBSan) against
# the library sources and run each for FUZZ_SECONDS (default 60), one after
# another, niced. Seeds come from tests/fuzz/corpus/<name>/; the growing
# corpus and any crash-* files go to build/fuzz/.
#   tests/fuzz/run.sh [fuzz_zip fuzz_pickle fuzz_safetensors]
# Needs: clang, libclang-rt-14-dev. Exit 1 when a fuzzer found a crash.
set -u
cd "$(dirname "$0")/../.." || exit 2
secs=${FUZZ_SECONDS:-60}
out=build/fuzz
mkdir -p "$out"
command -v clang >/dev/null || { echo "fuzz: clang not installed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
src="lib/ckpt/zip.c lib/ckpt/pickle.c lib/ckpt/unwrap.c lib/ckpt/pth.c lib/ckpt/safetensors.c
     lib/ckpt/dtype.c lib/ckpt/sha256.c lib/util.c lib/frame.c"
flags="-g -O1 -std=c11 -D_GNU_SOURCE -Ilib -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
targets=${*:-fuzz_zip fuzz_pickle fuzz_safetensors}
status=0
for t in $targets; do
  # shellcheck disable=SC2086
  clang $flags "tests/fuzz/$t.c" $src -lcjson -lz -lm -o "$out/$t" || exit 2
  mkdir -p "$out/corpus-$t"
  log="$out/$t.log"
  # -rss_limit_mb: a well-behaved reader never needs much for small inputs
  nice -n 10 "$out/$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=1024 \
    -timeout=10 -artifact_prefix="$out/$t-" "$out/corpus-$t" "tests/fuzz/corpus/$t" \
    > "$log" 2>&1
  rc=$?
  runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*')
  crashes=$(ls "$out/$t"-crash-* "$out/$t"-leak-* "$out/$t"-timeout-* "$out/$t"-oom-* 2>/dev/null | wc -l)
  echo "$t: ${runs:-?} executions in ${secs}s, exit $rc, $crashes crash/leak/timeout/oom files"
  [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ] || status=1
done
exit $status
