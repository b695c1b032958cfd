#!/usr/bin/env bats
# Hostile and broken input, faults and load, through the real tools: size
# claims refused before anything is allocated, closed and cut pipes, full
# disks and failing stdout, a 10,000-input batch under xargs -P.
load helper
bats_require_minimum_version 1.5.0

HOST=$FIX/hostile
TINY=$FIX/vit/tiny.safetensors

# Run a command with its peak resident memory in $kb (KiB), its stderr in
# $err and its exit status in $status; stdout is dropped.
peak() {
  status=0
  if [ -x /usr/bin/time ]; then
    err=$(/usr/bin/time -f 'peak %M' -o "$T/peak" "$@" 2>&1 >/dev/null) || status=$?
    kb=$(sed -n 's/^peak //p' "$T/peak")
  elif [ -x "$PY" ]; then
    err=$("$PY" -c '
import resource, subprocess, sys
r = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.buffer.write(r.stderr)
open(sys.argv[1], "w").write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode)' "$T/peak" "$@" 2>&1) || status=$?
    kb=$(cat "$T/peak")
  else
    skip "needs /usr/bin/time or python3 to measure memory"
  fi
  err=$(printf '%s\n' "$err" | grep -v ': note: ' || true)
}

# Refused with exit 1, one error line naming the file, in under 200 MB.
refused_small() {   # $1 = file name $2 = reason pattern
  [ "$status" -eq 1 ] || { echo "status $status: $err"; return 1; }
  one_error_line "$1" "$2" || { echo "error: $err"; return 1; }
  [ "$kb" -lt 204800 ] || { echo "peak $kb KiB"; return 1; }
}

# ---- limits before allocation ----------------------------------------

@test "hostile: images claiming 100000x100000 (PNG, PPM) or 65500x65500 (JPEG) are refused at once by every tool" {
  for f in huge.png huge.ppm huge.jpg; do
    peak "$BIN/vt-convert" "$HOST/$f" -o "$T/out"
    refused_small "$f" "over the limit of 178956970 \(--max-pixels\)"
    [ ! -e "$T/out" ]
    peak "$BIN/vt-classify" -m "$TINY" "$HOST/$f"
    refused_small "$f" "over the limit of 178956970 \(--max-pixels\)"
    peak "$BIN/vt-sigmap" -m "$TINY" --png-dir "$T" "$HOST/$f"
    refused_small "$f" "over the limit of 178956970 \(--max-pixels\)"
  done
}

# run_err without the random-weights note of vt-classify.
run_err_quiet() {
  run_err "$@"
  err=$(printf '%s\n' "$err" | grep -v ': note: ' || true)
}

@test "hostile: --max-pixels sets the limit in vt-convert, vt-classify and vt-sigmap" {
  # polars.jpeg is 286x176 = 50336 pixels
  for cmd in "vt-convert" "vt-classify -m $TINY" "vt-sigmap -m $TINY --png-dir $T"; do
    run_err_quiet $BIN/$cmd --max-pixels 50335 "$SAMPLES/polars.jpeg"
    [ "$status" -eq 1 ]
    one_error_line polars.jpeg "286x176 pixels, over the limit of 50335"
    run_err $BIN/$cmd --max-pixels 50336 "$SAMPLES/polars.jpeg"
    [ "$status" -eq 0 ]
    run_err $BIN/$cmd --max-pixels 0 "$SAMPLES/polars.jpeg"
    [ "$status" -eq 2 ]
    run_err $BIN/$cmd --max-pixels lots "$SAMPLES/polars.jpeg"
    [ "$status" -eq 2 ]
  done
}

@test "hostile: a frame claiming a 1 TiB tensor, a 32 GiB frame carrying 4 KiB, a .npy claiming 4 TB: refused at once" {
  for cmd in "vt-convert --info" "vt-classify -m $TINY" "vt-sigmap -m $TINY --png-dir $T"; do
    peak $BIN/$cmd "$HOST/tb.frame"
    refused_small tb.frame "over the size limit \(a frame holds at most 64 GiB\)"
    peak $BIN/$cmd "$HOST/big.frame"
    refused_small big.frame "truncated frame"
    peak $BIN/$cmd "$HOST/huge.npy"
    refused_small huge.npy "too large \(a .npy holds at most 32 GiB\)"
  done
  # the same claims arriving on a pipe
  peak sh -c "cat '$HOST/big.frame' | '$BIN/vt-convert' --info"
  refused_small stdin "truncated frame"
}

@test "hostile: a checkpoint whose pickle is a billion-element list is refused at once" {
  [ -x "$PY" ] || skip "needs python3 to make the 2 MB checkpoint"
  "$PY" "$ROOT/tests/make-hostile-fixtures.py" billion "$T/billion.pth"
  peak "$BIN/vt-convert" --info "$T/billion.pth"
  refused_small billion.pth "data.pkl is 1999634443 bytes, over the limit of 268435456"
  peak "$BIN/vt-convert" "$T/billion.pth" --arch deit_tiny_patch16_224 -o "$T/m.safetensors"
  refused_small billion.pth "over the limit"
  [ ! -e "$T/m.safetensors" ]
  [ -z "$(ls "$T" | grep tmp)" ]
}

@test "hostile: a 1x65535 strip is classified in bounded memory (only the crop is resized)" {
  peak "$BIN/vt-classify" -m "$TINY" "$HOST/tall.png"
  [ "$status" -eq 0 ]
  [ "$kb" -lt 204800 ]
  "$BIN/vt-convert" "$HOST/tall.png" | "$BIN/vt-convert" --info > "$T/info"
  grep -q 'resized = 256,16776960' "$T/info"
}

# ---- pipes -------------------------------------------------------------

# Run "$@" | head -c 64 with SIGPIPE as bats left it, then ignored; each
# time the tool must stop quietly (nothing on stderr but the random-weights
# note) with status 141.
quiet_on_closed_pipe() {
  for mode in inherited ignored; do
    (
      [ $mode = ignored ] && trap '' PIPE
      "$@" 2> "$T/err" | head -c 64 > /dev/null
      echo "${PIPESTATUS[0]}" > "$T/st"
    )
    [ "$(cat "$T/st")" -eq 141 ] || { echo "$mode: status $(cat "$T/st")"; cat "$T/err"; return 1; }
    if grep -v ': note: ' "$T/err"; then echo "$mode: noise above"; return 1; fi
  done
}

@test "pipes: vt-classify ... | head -1 ends quietly with status 141" {
  args=()
  for i in $(seq 200); do args+=("$FIX/vit/tiny-input.npy"); done
  (
    "$BIN/vt-classify" -m "$TINY" -t 1 "${args[@]}" 2> "$T/err" | head -1 > "$T/first"
    echo "${PIPESTATUS[0]}" > "$T/st"
  )
  [ "$(cat "$T/st")" -eq 141 ]
  [ "$(wc -l < "$T/first")" -eq 1 ]
  ! grep -v ': note: ' "$T/err"
  quiet_on_closed_pipe "$BIN/vt-classify" -m "$TINY" -t 1 "${args[@]}"
  quiet_on_closed_pipe "$BIN/vt-classify" -m "$TINY" -t 1 --logits "${args[@]}"
  quiet_on_closed_pipe "$BIN/vt-classify" -m "$TINY" -t 1 --format json -b 4 "${args[@]}"
}

@test "pipes: vt-convert, vt-convert --info and vt-sigmap stop quietly with status 141 too" {
  args=()
  for i in $(seq 200); do args+=("$FIX/vit/tiny-input.npy"); done
  quiet_on_closed_pipe "$BIN/vt-convert" "${args[@]}"
  quiet_on_closed_pipe "$BIN/vt-convert" --info "${args[@]}"
  quiet_on_closed_pipe "$BIN/vt-sigmap" -m "$TINY" -t 1 "${args[@]}"
}

# A producer that writes two whole frames and part of a third, then is
# killed (SIGKILL) mid-frame.
killed_producer() {
  local size
  size=$(stat -c %s "$T/three")
  sh -c "head -c $((size - 100)) '$T/three'; kill -KILL \$\$"
}

@test "pipes: a producer killed mid-frame: every complete frame is used, then 'truncated frame', exit 1" {
  "$BIN/vt-convert" "$FIX/vit/tiny-input.npy" > "$T/three"   # 3 image frames
  for b in 1 2 3; do
    status=0
    killed_producer | "$BIN/vt-classify" -m "$TINY" -b $b -k 1 --format tsv > "$T/out" 2> "$T/err" || status=$?
    [ "$status" -eq 1 ]
    [ "$(cut -f1 "$T/out" | tr '\n' ' ')" = "tiny-input.npy#0 tiny-input.npy#1 " ]
    [ "$(grep -vc ': note: ' "$T/err")" -eq 1 ]
    grep -qx 'vt-classify: stdin: truncated frame' "$T/err"
  done
  status=0
  killed_producer | "$BIN/vt-classify" -m "$TINY" -b 3 --logits > "$T/logits" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  [ "$("$BIN/vt-convert" --info "$T/logits" | grep -c '^frame ')" -eq 2 ]
  status=0
  killed_producer | "$BIN/vt-sigmap" -m "$TINY" > "$T/maps" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  grep -qx 'vt-sigmap: stdin: truncated frame' "$T/err"
  [ "$("$BIN/vt-convert" --info "$T/maps" | grep -c '^frame ')" -eq 2 ]
  status=0
  killed_producer | "$BIN/vt-convert" - > "$T/copy" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  grep -qx 'vt-convert: stdin: truncated frame' "$T/err"
  [ "$("$BIN/vt-convert" --info "$T/copy" | grep -c '^frame ')" -eq 2 ]
}

# ---- full disks and write errors --------------------------------------

# Run a script with a small tmpfs mounted at $T/full, in a private mount
# namespace (needs root and unshare); skip when that is not permitted. The
# script's status goes to $T/full.status, its stderr to $T/full.err, what
# it left on the disk to $T/kept (names in $T/full.ls).
with_small_disk() {   # $1 = size (96k) $2 = script
  mkdir -p "$T/full"
  unshare -m --propagation private true 2>/dev/null ||
    skip "needs root and unshare -m to mount a small tmpfs"
  unshare -m --propagation private bash -c \
    "mount -t tmpfs -o size=$1 tmpfs '$T/full' || exit 99; $2; echo \$? > '$T/full.status'
     ls -A '$T/full' > '$T/full.ls'; rm -rf '$T/kept'; cp -r '$T/full' '$T/kept'" \
    2> "$T/full.err"
  [ "$(cat "$T/full.status" 2>/dev/null)" != 99 ] || skip "cannot mount a tmpfs here"
}

@test "disk full: -o on a full filesystem reports the error and leaves no file" {
  with_small_disk 96k "'$BIN/vt-convert' '$SAMPLES/tench.jpg' -o '$T/full/tench.frame'"
  [ "$(cat "$T/full.status")" -eq 1 ]
  [ -z "$(cat "$T/full.ls")" ]
  err=$(cat "$T/full.err")
  one_error_line "full/tench.frame" "No space left on device"
  with_small_disk 96k "'$BIN/vt-convert' '$SAMPLES/tench.jpg' '$SAMPLES/polars.jpeg' --to npy -o '$T/full/all.npy'"
  [ "$(cat "$T/full.status")" -eq 1 ]
  [ -z "$(cat "$T/full.ls")" ]
  with_small_disk 96k "'$BIN/vt-convert' --arch deit_tiny_patch16_224 --random -o '$T/full/m.safetensors'"
  [ "$(cat "$T/full.status")" -eq 1 ]
  [ -z "$(cat "$T/full.ls")" ]
  err=$(cat "$T/full.err")
  one_error_line "full/m.safetensors" "No space left on device"
}

# Every PNG in a directory is whole (ends with its IEND chunk).
all_pngs_whole() {   # $1 = directory
  local f
  for f in "$1"/*; do
    [ -e "$f" ] || continue
    [[ "$f" == *.png ]] || { echo "stray file $f"; return 1; }
    [ "$(tail -c 12 "$f" | od -An -tx1 | tr -d ' \n')" = 0000000049454e44ae426082 ] ||
      { echo "partial $f"; return 1; }
  done
}

@test "disk full: --png-dir and --out-dir write what fits, whole, and report each PNG that did not" {
  for i in $(seq 12); do cp "$SAMPLES/tench.jpg" "$T/t$i.jpg"; done
  with_small_disk 16k "'$BIN/vt-sigmap' -m '$TINY' --png-dir '$T/full' --overlay '$T'/t*.jpg"
  [ "$(cat "$T/full.status")" -eq 1 ]
  all_pngs_whole "$T/kept"
  written=$(ls "$T/kept" | wc -l)
  failed=$(grep -c "^vt-sigmap: $T/full/t[0-9]*.png: .*No space left on device" "$T/full.err")
  [ "$written" -ge 1 ] && [ "$failed" -ge 1 ] && [ $((written + failed)) -eq 12 ]
  with_small_disk 96k "'$BIN/vt-convert' --size 96 --to png --out-dir '$T/full' '$T'/t*.jpg"
  [ "$(cat "$T/full.status")" -eq 1 ]
  all_pngs_whole "$T/kept"
  written=$(ls "$T/kept" | wc -l)
  failed=$(grep -c "^vt-convert: $T/full/t[0-9]*.png: .*No space left on device" "$T/full.err")
  [ "$written" -ge 1 ] && [ "$failed" -ge 1 ] && [ $((written + failed)) -eq 12 ]
}

@test "disk full: a write error on stdout (/dev/full) fails the run with one line naming stdout" {
  [ -c /dev/full ] || skip "/dev/full is not a character device here"
  for cmd in "vt-convert" "vt-convert --info" "vt-convert --to npy" "vt-classify -m $TINY" \
             "vt-classify -m $TINY --logits" "vt-classify -m $TINY --format json" \
             "vt-sigmap -m $TINY"; do
    status=0
    err=$($BIN/$cmd "$FIX/vit/tiny-input.npy" 2>&1 > /dev/full) || status=$?
    err=$(printf '%s\n' "$err" | grep -v ': note: ' || true)
    [ "$status" -eq 1 ] || { echo "$cmd: status $status"; false; }
    [ "$err" = "${cmd%% *}: stdout: write error: No space left on device" ] || { echo "$cmd: $err"; false; }
  done
  status=0
  err=$("$BIN/vt-bench" -m "$TINY" --runs 1 2>&1 > /dev/full) || status=$?
  [ "$status" -eq 1 ]
  [ "$err" = "vt-bench: stdout: write error: No space left on device" ]
}

# ---- load --------------------------------------------------------------

# 10,000 inputs in $T/in: n1 ... n10000.ppm, every 50th broken (empty,
# truncated, garbage or a PNG with a bad CRC); good and bad names listed in
# $T/good and $T/bad.
make_batch() {
  mkdir -p "$T/in"
  local i px
  for i in $(seq 10000); do
    if [ $((i % 50)) -eq 0 ]; then
      case $((i / 50 % 4)) in
        0) : > "$T/in/n$i.ppm";;
        1) printf 'P6\n4 4\n255\nabc' > "$T/in/n$i.ppm";;
        2) echo "not an image $i" > "$T/in/n$i.ppm";;
        3) cp "$FIX/cli/bad-crc.png" "$T/in/n$i.ppm";;
      esac
      echo "n$i.ppm" >> "$T/bad"
    else
      printf -v px '%048d' "$i"
      printf 'P6\n4 4\n255\n%s' "$px" > "$T/in/n$i.ppm"
      echo "n$i.ppm" >> "$T/good"
    fi
  done
  sort -o "$T/good" "$T/good"
  sort -o "$T/bad" "$T/bad"
}

@test "load: 10,000 inputs, 200 broken, through xargs -P 2: one result per good input, one error per bad one" {
  make_batch
  (cd "$T/in" && ls) | sed "s|^|$T/in/|" > "$T/list"
  # vt-classify: one tsv line per good image (-k 1), one error line per bad
  xargs -P 2 -n 500 "$BIN/vt-classify" -m "$TINY" -t 1 -k 1 --format tsv < "$T/list" \
    > "$T/out" 2> "$T/err" || true
  cut -f1 "$T/out" | sort > "$T/got"
  cmp "$T/got" "$T/good"
  grep -v ': note: ' "$T/err" | sed -n "s|^vt-classify: $T/in/\([^:]*\): .*|\1|p" | sort > "$T/gotbad"
  cmp "$T/gotbad" "$T/bad"
  [ "$(grep -vc ': note: ' "$T/err")" -eq 200 ]
  # vt-convert: one frame listing per good image, one error per bad
  xargs -P 2 -n 500 "$BIN/vt-convert" --size 8 --info < "$T/list" > "$T/out" 2> "$T/err" || true
  sed -n 's/^frame [0-9]*: \(.*\) (image)$/\1/p' "$T/out" | sort > "$T/got"
  cmp "$T/got" "$T/good"
  sed -n "s|^vt-convert: $T/in/\([^:]*\): .*|\1|p" "$T/err" | sort > "$T/gotbad"
  cmp "$T/gotbad" "$T/bad"
  [ "$(wc -l < "$T/err")" -eq 200 ]
}
