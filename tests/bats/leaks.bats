#!/usr/bin/env bats
# No leaks: a batch of 100 images (and a few broken inputs, whose error
# paths are where leaks hide) through every tool and mode. LeakSanitizer
# checks it in the sanitizer build (make SANITIZE=1 test sets VT_SANITIZE);
# valgrind does when VT_VALGRIND=1 is set; otherwise the tests skip.
load helper
bats_require_minimum_version 1.5.0

TINY=$FIX/vit/tiny.safetensors

setup() {
  T=$(mktemp -d)
  IMAGES=()
  local i
  for i in $(seq 25); do
    IMAGES+=("$SAMPLES/tench.jpg" "$SAMPLES/polars.jpeg" "$FIX/cli/tiny.png" "$FIX/images/pnm_rgb.ppm")
  done
  head -c 3000 "$SAMPLES/tench.jpg" > "$T/cut.jpg"
  : > "$T/empty.png"
  BROKEN=("$T/cut.jpg" "$FIX/cli/bad-crc.png" "$T/empty.png" "$T/missing.ppm" "$FIX/hostile/huge.png")
}

# Run "$@" with stdout dropped; it must exit with status $want and no
# sanitizer or valgrind report.
no_leaks() {   # $1 = expected status, then the command
  local want=$1
  shift
  status=0
  if [ -n "${VT_SANITIZE:-}" ]; then
    err=$("$@" 2>&1 >/dev/null) || status=$?
    if [[ "$err" == *Sanitizer* ]]; then printf '%s\n' "$err" | head -40; return 1; fi
  elif [ -n "${VT_VALGRIND:-}" ] && command -v valgrind >/dev/null; then
    err=$(valgrind -q --error-exitcode=99 --leak-check=full \
          --errors-for-leak-kinds=definite,indirect "$@" 2>&1 >/dev/null) || status=$?
  else
    skip "leaks are checked by make SANITIZE=1 test (LeakSanitizer) or VT_VALGRIND=1"
  fi
  [ "$status" -eq "$want" ] || { echo "status $status, want $want: $*"; printf '%s\n' "$err" | tail -20; return 1; }
}

@test "leaks: under VT_SANITIZE the programs tested are the sanitizer build" {
  [ -n "${VT_SANITIZE:-}" ] || skip "not the sanitizer run"
  for t in vt-convert vt-classify vt-sigmap vt-bench vt-prune; do
    grep -q __asan_init "$BIN/$t"
  done
}

@test "leaks: vt-convert, 100 images and broken inputs, every output mode" {
  no_leaks 0 "$BIN/vt-convert" "${IMAGES[@]}" -o "$T/frames"
  no_leaks 1 "$BIN/vt-convert" "${IMAGES[@]}" "${BROKEN[@]}" -o "$T/frames"
  no_leaks 1 "$BIN/vt-convert" --info "${IMAGES[@]}" "${BROKEN[@]}"
  no_leaks 0 "$BIN/vt-convert" --to npy -o "$T/all.npy" "${IMAGES[@]}"
  mkdir "$T/pngs"
  no_leaks 1 "$BIN/vt-convert" --size 64 --to png --out-dir "$T/pngs" "${IMAGES[@]}" "${BROKEN[@]}"
  no_leaks 0 "$BIN/vt-convert" --info "$T/frames" "$FIX/cli/batch.npy"
  no_leaks 1 "$BIN/vt-convert" --info "$FIX/hostile/tb.frame" "$FIX/hostile/big.frame" "$FIX/hostile/huge.npy"
}

@test "leaks: vt-convert checkpoints: conversion, --info, --random, hostile files" {
  no_leaks 0 "$BIN/vt-convert" --arch sgformer_s --config "$FIX/sgformer/meta.json" \
    "$FIX/sgformer/checkpoint.pth" -o "$T/sg.safetensors"
  no_leaks 0 "$BIN/vt-convert" --info "$FIX/ckpt/timm.pth" "$FIX/ckpt/flat.safetensors"
  no_leaks 0 "$BIN/vt-convert" --arch deit_tiny_patch16_224 --random -o "$T/r.safetensors"
  for f in "$FIX"/ckpt/h_*.pth; do
    no_leaks 1 "$BIN/vt-convert" --info "$f"
  done
  no_leaks 1 "$BIN/vt-convert" --arch deit_tiny_patch16_224 "$FIX/ckpt/h_eval.pth" -o "$T/x.safetensors"
}

@test "leaks: vt-classify, 100 images and broken inputs, text, json, logits, batches" {
  no_leaks 0 "$BIN/vt-classify" -m "$TINY" -t 2 "${IMAGES[@]}"
  no_leaks 1 "$BIN/vt-classify" -m "$TINY" -t 2 -b 8 --format json "${IMAGES[@]}" "${BROKEN[@]}"
  no_leaks 1 "$BIN/vt-classify" -m "$TINY" -t 1 -b 3 --logits "${IMAGES[@]}" "${BROKEN[@]}"
  no_leaks 1 "$BIN/vt-classify" -m "$FIX/vit/tiny-input.npy" "${IMAGES[@]}"
}

@test "leaks: vt-sigmap, 100 images and broken inputs, frames and PNGs" {
  no_leaks 0 "$BIN/vt-sigmap" -m "$TINY" -t 2 "${IMAGES[@]}"
  mkdir "$T/maps"
  no_leaks 1 "$BIN/vt-sigmap" -m "$TINY" --png-dir "$T/maps" --overlay "${IMAGES[@]}" "${BROKEN[@]}"
  no_leaks 1 "$BIN/vt-sigmap" -m "$TINY" --method rollout --block 1 "${IMAGES[@]}" "${BROKEN[@]}"
  no_leaks 2 "$BIN/vt-sigmap" -m "$TINY" --method no-such-method "${IMAGES[@]}"
}

@test "leaks: vt-bench, 100 timed runs; vt-prune" {
  no_leaks 0 "$BIN/vt-bench" -m "$TINY" --runs 100 -t 2 --explain
  no_leaks 1 "$BIN/vt-bench" -m "$FIX/vit/tiny-input.npy" --runs 1
  no_leaks 0 "$BIN/vt-prune" --help
}
