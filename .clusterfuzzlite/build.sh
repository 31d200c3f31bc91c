#!/bin/bash -eu
# Builds the fuzz targets the OSS-Fuzz way: `cargo fuzz build -O`, each target
# copied to $OUT. In the builder image (Dockerfile here) OSS-Fuzz's `compile`
# runs it with SRC, OUT, SANITIZER, RUSTFLAGS set; outside Docker set at least
# SRC (holding xsave-lab/, this checkout) and OUT, as .ci/run does.
#
# diff_native is always built with `-s none` and RUSTFLAGS without
# -Zsanitizer=...: its runner maps the case's code and arena at fixed
# addresses (64 GiB, 128 GiB) inside AddressSanitizer's shadow memory.
cd "$SRC/xsave-lab"
# Builds without a sanitizer go to cargo-fuzz's own target folder (shared with
# `cargo fuzz run -O -s none`, as in .ci/run); ASan builds to one of their own,
# so that switching never rebuilds the other.
case "${SANITIZER:-address}" in
  address) san=address; target_dir=fuzz/target/address ;;
  none) san=none; target_dir=fuzz/target ;;
  # OSS-Fuzz's cargo wrapper turns `cargo fuzz build` into a coverage build in fuzz/target.
  coverage) san=none; target_dir=fuzz/target ;;
  *) echo "build.sh: SANITIZER=$SANITIZER: Rust targets build with address, coverage or none" >&2; exit 1 ;;
esac
# The builder image's cargo is a nightly already (and a wrapper that must see
# `fuzz` first); elsewhere, rustup's nightly.
cargo=(cargo)
if ! cargo --version | grep -q nightly; then cargo=(cargo +nightly); fi
triple=x86_64-unknown-linux-gnu
for t in emu_total case_file roundtrip; do
  "${cargo[@]}" fuzz build -O -s "$san" --target-dir "$target_dir" "$t"
  cp "$target_dir/$triple/release/$t" "$OUT/"
done
RUSTFLAGS="$(echo "${RUSTFLAGS:-}" | sed 's/-Zsanitizer=[a-z,]*//g')" \
  "${cargo[@]}" fuzz build -O -s none diff_native
cp "fuzz/target/$triple/release/diff_native" "$OUT/"
