#!/usr/bin/env bash
# Build the Embedded Swift guests: Guests/swift/NAME.elf (committed, for the ELF loader and debuggers) and the
# flat image Guests/NAME.bin (what `microvm Guests/NAME.bin` boots today).
#
#   scripts/build-swift-guests.sh            build every Swift guest into Guests/swift/*.elf and Guests/*.bin
#   scripts/build-swift-guests.sh --check    build into a temporary directory and compare byte for byte with
#                                            the committed files; exit 1 at the first difference
#   scripts/build-swift-guests.sh --into D   build into D/NAME.bin and D/swift/NAME.elf (scripts/build-guests.sh
#                                            does this, so one --check covers assembly and Swift guests)
#
# Each guest is one Swift file in Guests/swift/ compiled together with the runtime (Guests/swift/Runtime/*.swift)
# as one module, plus Runtime/support.c and Runtime/start64.S or start32.S; arch from the name (64 amd64,
# 32 i686). Flags and why: Guests/swift/README.md. A guest marked `debug` (amd64 only) is built for debuggers:
# -Onone with DWARF (-g, paths made relative so the bytes do not depend on the checkout or the toolchain's
# place), linked in the upper half by Runtime/debug64.ld, and comes out as Guests/swift/NAME.elf only. Only the Swift toolchain is used (swiftc, clang, ld.lld,
# llvm-objcopy, llvm-objdump); set SWIFT_TOOLCHAIN to its bin directory (default /opt/swift/usr/bin).
# Every guest's code is disassembled and the build fails on any x87, MMX or SSE instruction or register, or
# popcnt / crc32: a KVM that emulates guest code (this machine's kvm_pvm) cannot run them.
set -euo pipefail

TOOLS="${SWIFT_TOOLCHAIN:-/opt/swift/usr/bin}"
SWIFTC="$TOOLS/swiftc"
CLANG="$TOOLS/clang"
LLD="$TOOLS/ld.lld"
OBJCOPY="$TOOLS/llvm-objcopy"
OBJDUMP="$TOOLS/llvm-objdump"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GUESTS="$ROOT/Guests"
SOURCES="$GUESTS/swift"

# NAME SOURCE [debug]: the guests, in build order.
GUEST_LIST=(
    "swifthello64 swifthello.swift"
    "swifthello32 swifthello.swift"
    "pagewalk64 pagewalk.swift"
    "pagewalk32 pagewalk.swift"
    "cow64 cow.swift"
    "cow32 cow.swift"
    "alloc64 alloc.swift"
    "callee64 callee64.swift"
    "debugme64 debugme.swift debug"
)

mode=build
into=""
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    --into)
        mode=into
        into="${2:?--into needs a directory}"
        ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-swift-guests: unknown argument: $1 (use --check, --into DIR or nothing)" >&2; exit 2 ;;
esac

for tool in "$SWIFTC" "$CLANG" "$LLD" "$OBJCOPY" "$OBJDUMP"; do
    if [[ ! -x "$tool" ]]; then
        echo "build-swift-guests: $tool not found (set SWIFT_TOOLCHAIN to the toolchain's bin directory)" >&2
        exit 2
    fi
done

export LC_ALL=C
work="$(mktemp -d "${TMPDIR:-/tmp}/build-swift-guests.XXXXXX")"
trap 'rm -rf "$work"' EXIT
out="${into:-$work/out}"
mkdir -p "$out/swift" "$work/objects" "$work/module-cache"

# Shared by the Swift and C code (Guests/swift/README.md says why each is there).
NO_FLOAT=(-mno-sse -mno-sse2 -mno-mmx -msoft-float)
SWIFT_FLAGS=(
    -enable-experimental-feature Embedded -wmo -parse-as-library -Osize
    -Xfrontend -disable-stack-protector -Xfrontend -function-sections
    -Xcc -mno-red-zone -Xcc -mno-sse -Xcc -mno-sse2 -Xcc -mno-mmx -Xcc -msoft-float -Xcc -momit-leaf-frame-pointer
    -swift-version 6 -module-name Guest -I Runtime -module-cache-path "$work/module-cache"
)
C_FLAGS=(
    -ffreestanding -nostdlib -Os -Werror -mno-red-zone "${NO_FLOAT[@]}" -fno-stack-protector -momit-leaf-frame-pointer -ffunction-sections -fdata-sections
    -fno-asynchronous-unwind-tables -fno-ident -I Runtime
)
# Guests for debuggers: no optimisation (every argument and local lives in the frame, where DWARF says), DWARF
# without skeleton units for the imported C modules (they would name .pcm files in the temporary module cache),
# source and toolchain paths rewritten to fixed ones. The C runtime is linked in the top 2 GiB there.
TOOLCHAIN_ROOT="$(cd "$TOOLS/../.." && pwd)"
DEBUG_SWIFT_FLAGS=(
    -Onone -g -Xfrontend -no-clang-module-breadcrumbs
    -debug-prefix-map "$SOURCES=." -debug-prefix-map "$TOOLCHAIN_ROOT=/toolchain" -file-compilation-dir .
)
DEBUG_C_FLAGS=(-mcmodel=kernel)

# Fails if any object's code uses the FPU, MMX, SSE, popcnt or crc32 (every x87 mnemonic starts with f).
check_no_float() {
    local name="$1"; shift
    local bad
    bad="$("$OBJDUMP" -d --no-show-raw-insn "$@" \
        | awk -F'\t' 'NF >= 2 && $1 ~ /^ *[0-9a-f]+:/ {
              if ($2 ~ /^(f[a-z0-9]*|popcnt[a-z]*|crc32[a-z]*|emms|ldmxcsr|stmxcsr)$/ || $3 ~ /%([xyz]?mm[0-9]+|st\>|st\()/)
                  print "  " $1 " " $2 " " $3
          }')" || true
    if [[ -n "$bad" ]]; then
        echo "build-swift-guests: $name uses floating-point, MMX or SSE instructions (an emulating KVM cannot run them):" >&2
        echo "$bad" | head -20 >&2
        exit 1
    fi
}

built=()
for entry in "${GUEST_LIST[@]}"; do
    read -r name source kind <<<"$entry"
    case "$name" in
        *64) target=x86_64-unknown-none-elf; emul=elf_x86_64; start=start64.S; script=guest64.ld ;;
        *32) target=i686-unknown-none-elf;   emul=elf_i386;   start=start32.S; script=guest32.ld ;;
        *) echo "build-swift-guests: $name: name must end in 64 (amd64) or 32 (i686)" >&2; exit 2 ;;
    esac
    swift_flags=("${SWIFT_FLAGS[@]}")
    c_flags=("${C_FLAGS[@]}")
    if [[ "$kind" == debug ]]; then
        [[ "$name" == *64 ]] || { echo "build-swift-guests: $name: only amd64 guests are built for debuggers" >&2; exit 2; }
        swift_flags=("${swift_flags[@]/-Osize/}" "${DEBUG_SWIFT_FLAGS[@]}")
        c_flags+=("${DEBUG_C_FLAGS[@]}")
        script=debug64.ld
    fi
    objects="$work/objects/$name"
    mkdir -p "$objects"
    # From inside Guests/swift with relative names, so no absolute path can reach an object.
    (
        cd "$SOURCES"
        "$SWIFTC" -target "$target" "${swift_flags[@]}" Runtime/*.swift "$source" -c -o "$objects/swift.o"
        "$CLANG" -target "$target" "${c_flags[@]}" -c Runtime/support.c -o "$objects/support.o"
        "$CLANG" -target "$target" -nostdinc -Werror -c "Runtime/$start" -o "$objects/start.o"
    )
    check_no_float "$name" "$objects/start.o" "$objects/swift.o" "$objects/support.o"
    "$LLD" -m "$emul" -T "$SOURCES/Runtime/$script" --gc-sections --orphan-handling=error --build-id=none -z norelro -z nognustack --nmagic \
        -nostdlib -static -o "$out/swift/$name.elf" "$objects/start.o" "$objects/swift.o" "$objects/support.o"
    if [[ "$kind" == debug ]]; then
        if grep -q -a -e "$SOURCES" -e "$work" "$out/swift/$name.elf"; then
            echo "build-swift-guests: $name.elf names a build path (its bytes would depend on the checkout)" >&2
            exit 1
        fi
        built+=("swift/$name.elf")
        continue
    fi
    "$OBJCOPY" -O binary --only-section=.text "$out/swift/$name.elf" "$out/$name.bin"
    if [[ ! -s "$out/$name.bin" ]]; then
        echo "build-swift-guests: $name.bin is empty" >&2
        exit 1
    fi
    built+=("$name.bin" "swift/$name.elf")
done

case "$mode" in
    into) ;;
    check)
        for committed in "$SOURCES"/*.elf; do
            name="$(basename "$committed")"
            if [[ ! -e "$out/swift/$name" ]]; then
                echo "build-swift-guests: Guests/swift/$name is not built by this script" >&2
                exit 1
            fi
        done
        for name in "${built[@]}"; do
            if ! cmp -s "$out/$name" "$GUESTS/$name"; then
                echo "build-swift-guests: Guests/$name differs from its sources (run scripts/build-swift-guests.sh)" >&2
                exit 1
            fi
        done
        echo "swift guests: ${#built[@]} files match"
        ;;
    build)
        for name in "${built[@]}"; do
            cp "$out/$name" "$GUESTS/$name"
            chmod 0644 "$GUESTS/$name"
        done
        echo "swift guests: built ${#built[@]} files into Guests/"
        ;;
esac
