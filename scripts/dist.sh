#!/usr/bin/env bash
# Builds what ships to gateways into target/packages/, with the `dist` profile (stripped, fat
# LTO): an x86-64 binary for glibc 2.17 and later (cargo-zigbuild with Zig from PyPI), an
# aarch64 binary (Debian's rustc-web cross toolchain) smoke-tested under qemu-aarch64, and the
# .deb (cargo-deb). Installs the tools it lacks. Prints each file's size and glibc floor.
# docs/operations.md says what each is.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
out=target/packages
mkdir -p "$out"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

glibc_floor() { # the newest GLIBC_x.y symbol version a binary asks for
  "$1" -T "$2" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1
}

echo "== tools"
python3 -c 'import ziglang' 2>/dev/null || python3 -m pip install -q ziglang
command -v cargo-zigbuild >/dev/null || cargo install --locked -q cargo-zigbuild
command -v cargo-deb >/dev/null || cargo install --locked -q cargo-deb
if ! dpkg -s libstd-rust-web-dev:arm64 >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null; then
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rustc-web cargo-web \
    libstd-rust-web-dev:arm64 libc6:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi

echo "== x86-64, glibc 2.17"
cargo zigbuild --profile dist --target x86_64-unknown-linux-gnu.2.17
x86="$out/ecogate-$version-x86_64-linux-gnu"
cp target/x86_64-unknown-linux-gnu/dist/ecogate "$x86"
"$x86" --version

echo "== aarch64"
# Debian's toolchain (rustup's would need the aarch64 standard library from the internet); a
# target folder of its own, since its rustc differs from the host build's.
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
RUSTC=/usr/bin/rustc \
  /usr/bin/cargo build --profile dist --target aarch64-unknown-linux-gnu --target-dir target/cross
arm="$out/ecogate-$version-aarch64-linux-gnu"
cp target/cross/aarch64-unknown-linux-gnu/dist/ecogate "$arm"
echo "-- smoke test under qemu-aarch64"
smoke=$(mktemp -d)
trap 'rm -rf "$smoke"' EXIT
# The arm64 libc of the multiarch install (/lib/aarch64-linux-gnu), not the cross sysroot's:
# under qemu-aarch64 7.2, the cross sysroot's glibc hangs in the first pthread_create.
qemu() { qemu-aarch64 "$arm" "$@"; }
qemu --version
qemu check --config config/ecogate.example.toml >"$smoke/check.txt"
head -n 1 "$smoke/check.txt"
qemu replay --config config/ecogate.example.toml --input tests/data/sample.csv \
  --store "$smoke/store.db" >"$smoke/replay.txt"
grep -m 3 -E 'firm|恒达' "$smoke/replay.txt" || true
# The same replay on the host build must print the same figures.
"$x86" replay --config config/ecogate.example.toml --input tests/data/sample.csv \
  --store "$smoke/host.db" >"$smoke/replay-host.txt"
diff <(sed "s#$smoke/store.db#STORE#" "$smoke/replay.txt") \
     <(sed "s#$smoke/host.db#STORE#" "$smoke/replay-host.txt")
echo "   aarch64 replay equals the x86-64 one"

echo "== .deb"
# The glibc 2.17 binary built above, not another build for this machine's glibc.
cargo deb --profile dist --no-build --target x86_64-unknown-linux-gnu --output "$out/"
deb=$(ls -t "$out"/ecogate_*.deb | head -n 1)

echo "== what ships"
printf '%-48s %12s  %s\n' file bytes glibc
printf '%-48s %12s  %s\n' "$(basename "$x86")" "$(stat -c %s "$x86")" "$(glibc_floor objdump "$x86")"
printf '%-48s %12s  %s\n' "$(basename "$arm")" "$(stat -c %s "$arm")" "$(glibc_floor aarch64-linux-gnu-objdump "$arm")"
printf '%-48s %12s\n' "$(basename "$deb")" "$(stat -c %s "$deb")"
