#!/bin/bash
# Run the libFuzzer harnesses (ASan + UBSan) for FUZZ_SECONDS each (default
# 60), FUZZ_JOBS at a time (default 1), niced. Built by `make fuzz-build`
# into build/fuzz/, apart from the normal build.
#
#   tests/fuzz/run.sh [fuzz_frames fuzz_npy ...]     (default: every harness)
#   make fuzz FUZZ_SECONDS=1800 FUZZ_JOBS=2
#
# Seeds: tests/fuzz/corpus/<name>/ (small files kept in git, reproducers of
# fixed bugs among them) plus real files from tests/fixtures and
# share/samples, copied into build/fuzz/seeds-<name>/. What the fuzzer
# learns goes to build/fuzz/corpus-<name>/ and is reused by the next run;
# crash, leak, timeout and out-of-memory reproducers to
# build/fuzz/<name>-artifacts/. One summary line per harness: executions,
# executions per second, coverage (cov: edges, ft: features), corpus size,
# reproducers. Exit 1 when any harness found something, 2 when it could not
# build or run. Needs clang and libclang-rt-14-dev.
set -u
cd "$(dirname "$0")/../.." || exit 2
secs=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
out=build/fuzz
all="fuzz_frames fuzz_npy fuzz_jpeg fuzz_png fuzz_pnm fuzz_input fuzz_config fuzz_numbers
     fuzz_safetensors fuzz_zip fuzz_pickle fuzz_tokens"
targets=${*:-$all}

command -v clang >/dev/null ||
  { echo "fuzz: clang is not installed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
make --no-print-directory -s fuzz-build FUZZ_TARGETS="$targets" >&2 || exit 2

fix=tests/fixtures
# Real files each harness starts from (globs; missing ones are skipped).
seed_globs() {
  case $1 in
    fuzz_frames|fuzz_safetensors) echo "$fix/*/*.safetensors";;
    fuzz_npy) echo "$fix/*/*.npy";;
    fuzz_jpeg) echo "$fix/images/*.jpg share/samples/polars.jpeg share/samples/tench.jpg";;
    fuzz_png) echo "$fix/images/*.png $fix/cli/*.png";;
    fuzz_pnm) echo "$fix/images/*.pgm $fix/images/*.ppm";;
    fuzz_input) echo "$fix/images/*.jpg $fix/images/*.png $fix/images/*.p?m $fix/cli/*.npy
                      $fix/vit/*-input.npy $fix/ckpt/*.expect.safetensors";;
    fuzz_config) echo "$fix/*/meta.json $fix/ckpt/*.json";;
    fuzz_zip) echo "$fix/ckpt/*.pth $fix/*/checkpoint.pth";;
    *) echo "";;
  esac
}

# Per-harness libFuzzer options: input size, dictionary.
fuzz_opts() {
  case $1 in
    fuzz_zip) echo "-max_len=262144";;
    fuzz_frames) echo "-max_len=65536 -dict=tests/fuzz/frames.dict";;
    fuzz_safetensors|fuzz_tokens) echo "-max_len=65536 -dict=tests/fuzz/frames.dict";;
    fuzz_npy) echo "-max_len=65536 -dict=tests/fuzz/npy.dict";;
    fuzz_config) echo "-max_len=8192 -dict=tests/fuzz/config.dict";;
    fuzz_numbers) echo "-max_len=64";;
    *) echo "-max_len=65536";;
  esac
}

seed_dir() {   # $1 = harness; prints the directory of its real-file seeds
  local d=$out/seeds-$1 f
  rm -rf "$d"
  mkdir -p "$d"
  # shellcheck disable=SC2046
  for f in $(seed_globs "$1"); do
    [ -f "$f" ] && cp "$f" "$d/$(echo "$f" | tr / _)"
  done
  echo "$d"
}

run_one() {   # $1 = harness; writes $out/$1.summary
  local t=$1 log=$out/$1.log art=$out/$1-artifacts/ seeds corpus=$out/corpus-$1
  seeds=$(seed_dir "$t")
  rm -rf "$art"
  mkdir -p "$art" "$corpus" "tests/fuzz/corpus/$t"
  # shellcheck disable=SC2046
  OPENBLAS_NUM_THREADS=1 nice -n 19 "$out/$t" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art" $(fuzz_opts "$t") \
    "$corpus" "tests/fuzz/corpus/$t" "$seeds" > "$log" 2>&1
  local rc=$? runs eps cov ft found
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  found=$(find "$art" -type f | wc -l)
  printf '%-17s %10s execs %7s/s  cov %5s  ft %6s  corpus %5s  %s reproducers  (exit %s)\n' \
    "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$(find "$corpus" -type f | wc -l)" \
    "$found" "$rc" > "$out/$t.summary"
  [ "$rc" -eq 0 ] && [ "$found" -eq 0 ]
}

status=0
running=0
for t in $targets; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
  run_one "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
echo "fuzzing ${secs}s per harness (logs, corpora and reproducers in $out/):"
for t in $targets; do cat "$out/$t.summary"; done
exit $status
