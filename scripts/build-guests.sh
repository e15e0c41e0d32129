#!/usr/bin/env bash
# Build the flat guest binaries in Guests/ from their assembly sources.
#
#   scripts/build-guests.sh           build every Guests/*.S and copy the .bin files into Guests/
#   scripts/build-guests.sh --check   build into a temporary directory and compare byte-for-byte with the
#                                     committed Guests/*.bin; exit 1 at the first difference
#
# Arch comes from the name: *32.S is i686 (Guests/i686.ld), *64.S is amd64 (Guests/amd64.ld).
# Only the Swift toolchain's LLVM tools are used (clang as assembler, ld.lld, llvm-objcopy); set
# SWIFT_TOOLCHAIN to the directory that holds them (default /opt/swift/usr/bin).
# The build is deterministic: no debug info, no build id, ELF-only sections discarded, and the flat
# output is only the linked .text section (see the linker scripts).
# Guests/qemu/*.S are the QEMU oracle's 64 KiB -bios trampolines (tramp32 i686, tramp64 amd64), linked with
# Guests/qemu/bios.ld into Guests/qemu/*.bin and checked the same way.
# The Embedded Swift guests (Guests/swift/*.swift -> Guests/swift/NAME.elf and Guests/NAME.bin) are built by
# scripts/build-swift-guests.sh, called from here, and checked the same way too.
# Guests/elf/*.S are ELF guests: linked with Guests/elf/amd64.ld or i686.ld into Guests/elf/*.elf, which stay
# ELF executables (one PT_LOAD per permission; symbols kept, no build id) and are checked the same way.
set -euo pipefail

TOOLS="${SWIFT_TOOLCHAIN:-/opt/swift/usr/bin}"
CLANG="$TOOLS/clang"
LLD="$TOOLS/ld.lld"
OBJCOPY="$TOOLS/llvm-objcopy"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GUESTS="$ROOT/Guests"

check=0
case "${1:-}" in
    "") ;;
    --check) check=1 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-guests: unknown argument: $1 (use --check or nothing)" >&2; exit 2 ;;
esac

for tool in "$CLANG" "$LLD" "$OBJCOPY"; do
    if [[ ! -x "$tool" ]]; then
        echo "build-guests: $tool not found (set SWIFT_TOOLCHAIN to the toolchain's bin directory)" >&2
        exit 2
    fi
done

export LC_ALL=C
work="$(mktemp -d "${TMPDIR:-/tmp}/build-guests.XXXXXX")"
trap 'rm -rf "$work"' EXIT

shopt -s nullglob
sources=("$GUESTS"/*.S)
if (( ${#sources[@]} == 0 )); then
    echo "build-guests: no sources in $GUESTS" >&2
    exit 2
fi

# Assembles Guests/SUB/NAME.S and links it into $work/SUB/NAME.elf with SCRIPT (by default amd64.ld or
# i686.ld beside the source, by the name's ending: 64 or 32). The source is assembled from inside its folder
# with a relative name, so no absolute path can reach the object.
link_guest() {
    local sub="$1" name="$2" script="${3:-}" dir="$GUESTS${1:+/$1}" out="$work${1:+/$1}" target emul arch
    case "$name" in
        *64) target=x86_64-unknown-none-elf; emul=elf_x86_64; arch=amd64 ;;
        *32) target=i686-unknown-none-elf;   emul=elf_i386;   arch=i686 ;;
        *) echo "build-guests: ${sub:+$sub/}$name.S: name must end in 64 (amd64) or 32 (i686)" >&2; exit 2 ;;
    esac
    mkdir -p "$out"
    (cd "$dir" && "$CLANG" -target "$target" -nostdinc -Werror -c "$name.S" -o "$out/$name.o")
    "$LLD" -m "$emul" -T "${script:-$dir/$arch.ld}" --build-id=none -nostdlib -static -o "$out/$name.elf" "$out/$name.o"
}

built=()
for src in "${sources[@]}"; do
    name="$(basename "$src" .S)"
    link_guest "" "$name"
    "$OBJCOPY" -O binary --only-section=.text "$work/$name.elf" "$work/$name.bin"
    if [[ ! -s "$work/$name.bin" ]]; then
        echo "build-guests: $name.bin is empty" >&2
        exit 1
    fi
    built+=("$name.bin")
done

# The QEMU oracle's -bios trampolines (Guests/qemu/): same tools, their own linker script, 64 KiB each.
for src in "$GUESTS"/qemu/*.S; do
    name="$(basename "$src" .S)"
    link_guest qemu "$name" "$GUESTS/qemu/bios.ld"
    "$OBJCOPY" -O binary --only-section=.text "$work/qemu/$name.elf" "$work/qemu/$name.bin"
    built+=("qemu/$name.bin")
done

# The Embedded Swift guests: their own script (swiftc, flags, the no-floating-point check), into this directory.
"$ROOT/scripts/build-swift-guests.sh" --into "$work"
for elf in "$work"/swift/*.elf; do
    name="$(basename "$elf" .elf)"
    # Guests built for debuggers come out as an ELF only.
    if [[ -e "$work/$name.bin" ]]; then built+=("$name.bin"); fi
    built+=("swift/$name.elf")
done

# The ELF guests (Guests/elf/): linked as ELF executables with their own scripts, not flattened.
for src in "$GUESTS"/elf/*.S; do
    name="$(basename "$src" .S)"
    link_guest elf "$name"
    built+=("elf/$name.elf")
done

if (( check )); then
    # Every committed binary must have a source, and every source's binary must match byte for byte.
    for committed in "$GUESTS"/*.bin "$GUESTS"/qemu/*.bin "$GUESTS"/swift/*.elf "$GUESTS"/elf/*.elf; do
        name="${committed#"$GUESTS"/}"
        if [[ ! -e "$work/$name" ]]; then
            echo "build-guests: Guests/$name has no source (Guests/${name%.*}.S, or a Swift guest of scripts/build-swift-guests.sh)" >&2
            exit 1
        fi
    done
    for name in "${built[@]}"; do
        if [[ ! -e "$GUESTS/$name" ]]; then
            echo "build-guests: Guests/$name is missing (run scripts/build-guests.sh)" >&2
            exit 1
        fi
        if ! cmp -s "$work/$name" "$GUESTS/$name"; then
            echo "build-guests: Guests/$name differs from its source (run scripts/build-guests.sh)" >&2
            exit 1
        fi
    done
    echo "guests: ${#built[@]} files match"
else
    for name in "${built[@]}"; do
        cp "$work/$name" "$GUESTS/$name"
        chmod 0644 "$GUESTS/$name"
    done
    echo "guests: built ${#built[@]} files into Guests/"
fi
