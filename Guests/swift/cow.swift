// cow64 (amd64) and cow32 (i686): a write to a copy-on-write page lands in a private copy; the original frame
// keeps its bytes.
//
// What it does: installs the runtime's exception handlers (Runtime/Exceptions.swift), takes the first
// copy-on-write mapping of the boot-information block (VA -> frame PA), writes "original" into the frame through
// RAM's identity mapping (read-write), reads the 8 bytes back through the page (VA) and through the frame (PA),
// then writes "private!" through the page. That write faults (#PF, P=1 W=1); the handler asks the host to
// resolve it (hypercall 3), `invlpg`s the page and retries, and the write lands in the private copy. It reads
// both again, looks up where the page points now by walking its own tables, prints
//
//     cow64: 0x0000000040000000 is copy-on-write over frame 0x0000000000400000
//     before the write: the page reads "original", the frame reads "original"
//     after the write: the page reads "private!", the frame reads "original"
//     0x0000000040000000 now maps frame 0x0000000000XXX000 rw
//
// reports [page before, frame before, page after, frame after, new frame] (the 8 bytes as little-endian u64s)
// and halts.
//
// What the host must see: those four lines (XXX: the scratch frame the host chose, equal to the `to` of its
// one copy-on-write resolution, whose `from` is the frame), one report, HLT, status 0. cow32 prints 8-digit
// addresses and runs under the QEMU oracle with the host answering on the console (boot-info flags 0 and 1):
// the resolution is asked for with a `C 40000000` line before the four lines, and the run ends with QEMU
// status 1 (the report goes to a port QEMU ignores).
// Needs: `--map VA=PA:4K:rc` with PA in RAM (e.g. `--map 0x40000000=0x400000:4K:rc`); without a copy-on-write
// mapping it prints `cow64: no copy-on-write mapping (--map VA=PA:4K:rc)` and exits with status 1.

import GuestSupport

#if arch(x86_64)
    let name: StaticString = "cow64"
#else
    let name: StaticString = "cow32"
#endif

/// "original" and "private!" as little-endian u64s.
let originalBytes: UInt64 = 0x6C61_6E69_6769_726F
let privateBytes: UInt64 = 0x2165_7461_7669_7270

func guestMain(_ boot: BootInfo) {
    Exceptions.install()
    guard let mapping = boot.firstMapping(where: { $0.isCopyOnWrite }), mapping.physicalAddress < boot.memorySize
    else {
        Console.write(name)
        Console.write(": no copy-on-write mapping (--map VA=PA:4K:rc)\n")
        Runtime.exit(1)
    }
    let page = UInt(truncatingIfNeeded: mapping.virtualAddress)
    let frame = UInt(truncatingIfNeeded: mapping.physicalAddress)
    guest_write64(frame, originalBytes)
    let pageBefore = guest_read64(page)
    let frameBefore = guest_read64(frame)
    guest_write64(page, privateBytes)  // #PF, copy-on-write resolved by the host, retried
    let pageAfter = guest_read64(page)
    let frameAfter = guest_read64(frame)
    let now = PageTables.lookup(mapping.virtualAddress)

    Console.write(name)
    Console.write(": ")
    Console.write(address: mapping.virtualAddress)
    Console.write(" is copy-on-write over frame ")
    Console.write(address: mapping.physicalAddress)
    Console.write("\nbefore the write: the page reads ")
    writeQuoted(pageBefore)
    Console.write(", the frame reads ")
    writeQuoted(frameBefore)
    Console.write("\nafter the write: the page reads ")
    writeQuoted(pageAfter)
    Console.write(", the frame reads ")
    writeQuoted(frameAfter)
    Console.write("\n")
    Console.write(address: mapping.virtualAddress)
    if let now {
        Console.write(" now maps frame ")
        Console.write(address: now.physicalAddress)
        Console.write(now.isWritable ? " rw\n" : " read-only\n")
    } else {
        Console.write(" is not mapped\n")
    }
    Hypercall.report(pageBefore, frameBefore, pageAfter, frameAfter, now?.physicalAddress ?? 0, count: 5)
}

/// The 8 bytes of `value` (little-endian) between double quotes.
func writeQuoted(_ value: UInt64) {
    Console.write("\"")
    var shift: UInt64 = 0
    while shift < 64 {
        Console.write(UInt8(truncatingIfNeeded: value >> shift))
        shift += 8
    }
    Console.write("\"")
}
