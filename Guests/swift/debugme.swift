// debugme64 (amd64): a guest to debug with gdb (README "Debugging guests"). Built unoptimised with DWARF
// (-Onone -g) and linked in the upper half (Runtime/debug64.ld), so the addresses gdb shows are not the
// identity map: code at 0xffffffff80000000 (physical 0x100000), read-only data in the next page, data and
// bss in the one after; no flat image.
//
// What it does: prints "debugme: start", calls scale(step, by: 7) for step 1, 2, 3 (each adds its product to
// the global `total`), prints "debugme: magic 0123456789abcdef" and "debugme: total 42", and ends with
// status 42 through the exit port 0xF4.
//
// What gdb can name: `scale` (two arguments, `value` and `factor`, and a local, `product`), the globals
// `total` and `magic` (eight known bytes in .data: ef cd ab 89 67 45 23 01). gdb has no Swift demangler, so
// these have plain symbol names (@_silgen_name); the rest of the guest shows mangled names. Values print as
// Swift's structs: `print factor` shows `{_value = 7}`.
//
// Relies on: the runtime in Runtime/ (start code, Console, Runtime.exit); allocates nothing (the heap would
// start after the image, in the unmapped upper half).

/// The sum of every product `scale` computed.
@_silgen_name("total")
nonisolated(unsafe) var total: UInt64 = 0

/// Eight bytes gdb reads through the upper-half mapping (`x/8xb &magic`).
@_silgen_name("magic")
nonisolated(unsafe) var magic: UInt64 = 0x0123_4567_89AB_CDEF

/// `value` times `factor`, added to `total` and returned.
@inline(never) @_silgen_name("scale")
func scale(_ value: UInt64, by factor: UInt64) -> UInt64 {
    let product = value &* factor
    total &+= product
    return product
}

func guestMain(_ boot: BootInfo) {
    Console.write("debugme: start\n")
    var step: UInt64 = 1
    while step <= 3 {
        _ = scale(step, by: 7)
        step += 1
    }
    Console.write("debugme: magic ")
    Console.write(hex: magic, digits: 16)
    Console.write("\ndebugme: total ")
    Console.write(decimal: total)
    Console.write("\n")
    Runtime.exit(UInt8(truncatingIfNeeded: total))
}
