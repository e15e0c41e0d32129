#!/usr/bin/env bash
# Run every test suite: `swift test`, with the tools the suites need present.
#
#   scripts/test.sh                       all suites
#   scripts/test.sh --filter UserMode     any arguments go to `swift test` as they are
#
# The QEMU-oracle suites need Debian's qemu-system-x86 (qemu-system-i386 and qemu-system-x86_64) and the
# gdb end-to-end suite needs gdb. Whichever is missing is installed with apt-get when this user may (root,
# or sudo without a password); otherwise the script stops with one line naming what to install.
# MICROVM_REQUIRE_QEMU=1 and MICROVM_REQUIRE_GDB=1 are exported, so a test that needs QEMU or gdb fails
# rather than skips should either still be missing. The KVM suites need a readable and writable /dev/kvm and skip, with that reason, without one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/opt/swift/usr/bin:$PATH"

missing_packages() {
    local packages=()
    if ! command -v qemu-system-i386 >/dev/null 2>&1 || ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
        packages+=(qemu-system-x86)
    fi
    command -v gdb >/dev/null 2>&1 || packages+=(gdb)
    echo "${packages[@]}"
}

read -r -a missing <<<"$(missing_packages)"
if (( ${#missing[@]} > 0 )); then
    as_root=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            as_root=(sudo -n)
        else
            echo "test: missing ${missing[*]}: install with 'sudo apt-get install ${missing[*]}' (or run this script as root)" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test: missing ${missing[*]} and there is no apt-get here: install Debian's ${missing[*]} packages" >&2
        exit 1
    fi
    echo "test: installing ${missing[*]} with apt-get" >&2
    if ! { "${as_root[@]}" apt-get update -qq &&
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1; then
        echo "test: 'apt-get install ${missing[*]}' failed: install them by hand" >&2
        exit 1
    fi
    read -r -a missing <<<"$(missing_packages)"
    if (( ${#missing[@]} > 0 )); then
        echo "test: ${missing[*]} still missing after apt-get install" >&2
        exit 1
    fi
fi

export MICROVM_REQUIRE_QEMU=1 MICROVM_REQUIRE_GDB=1
exec swift test "$@"
