// CPU exceptions: an IDT for vectors 0-31 whose page-fault path resolves copy-on-write through the host.
//
// A write to a page the host mapped copy-on-write (`--map VA=PA:LEN:rc`: present, read-only, PTE bit 9) faults
// with #PF error code P=1 W=1. The handler asks the host to resolve it (hypercall 3 with CR2): the host copies
// the frame into a private one and maps the page writable in the live tables; the handler `invlpg`s the address
// (the TLB may still hold the read-only translation) and returns, and the stub's `iret` retries the write,
// which now lands in the private copy. Every other exception is fatal: hypercall 2 names it and the host ends
// the run with one line (vector, error code, CR2, RIP).
// Console mode (boot-info flag bit 0: the QEMU oracle, no hypercall port) speaks the probe runtime's console
// protocol (docs/layout.md): with flag bit 1 a host answers on the console, so the handler prints `C <cr2>` and
// reads one byte from COM1 ('0' resolved); a fatal exception prints `F <vector> <error> <cr2> <rip>` and ends
// with exit status 1.

import GuestSupport

enum Exceptions {
    /// The IDT: 32 gates at the start of the guest-runtime scratch page (docs/layout.md), 16 bytes each on
    /// amd64, 8 on i686.
    static let tableAddress: UInt = 0x3000
    /// The `lidt` operand (limit u16, base), after the gates.
    static let descriptorAddress: UInt = 0x3200
    /// The code segment selector of the host's GDT.
    static let codeSelector: UInt16 = 0x08

    #if arch(x86_64)
        static let gateSize = 16
    #else
        static let gateSize = 8
    #endif

    /// Builds the IDT and loads it: from now on a copy-on-write write fault is resolved and retried, and any
    /// other exception ends the run with a description instead of a triple fault.
    static func install() {
        let table = UnsafeMutableRawPointer(bitPattern: tableAddress).unsafelyUnwrapped
        let stubs = guest_exception_stubs()
        var vector = 0
        while vector < 32 {
            let handler = UInt64(stubs) + UInt64(vector * 16)  // the stubs are 16 bytes apart
            let gate = table + vector * gateSize
            gate.storeBytes(of: UInt16(truncatingIfNeeded: handler), toByteOffset: 0, as: UInt16.self)
            gate.storeBytes(of: codeSelector, toByteOffset: 2, as: UInt16.self)
            gate.storeBytes(of: 0x8E00, toByteOffset: 4, as: UInt16.self)  // present, DPL 0, interrupt gate
            gate.storeBytes(of: UInt16(truncatingIfNeeded: handler >> 16), toByteOffset: 6, as: UInt16.self)
            #if arch(x86_64)
                gate.storeBytes(of: UInt32(truncatingIfNeeded: handler >> 32), toByteOffset: 8, as: UInt32.self)
                gate.storeBytes(of: 0, toByteOffset: 12, as: UInt32.self)
            #endif
            vector += 1
        }
        let descriptor = UnsafeMutableRawPointer(bitPattern: descriptorAddress).unsafelyUnwrapped
        descriptor.storeBytes(of: UInt16(32 * gateSize - 1), toByteOffset: 0, as: UInt16.self)
        descriptor.storeBytes(of: tableAddress, toByteOffset: 2, as: UInt.self)
        guest_lidt(descriptor)
    }

    /// The page whose copy-on-write fault was resolved last: the same page faulting again right after means
    /// the retry cannot succeed (a read-only table above it, say), so it is fatal instead of a loop.
    nonisolated(unsafe) static var lastResolvedPage: UInt64 = 1

    /// Asks the host to resolve a write fault on a copy-on-write page: hypercall 3, or in console mode with a
    /// host answering on the console, a `C <address>` line and its one-byte answer.
    static func resolveCopyOnWrite(at address: UInt64) -> Bool {
        let flags = Runtime.bootInfo.flags
        if flags & 1 == 0 { return Hypercall.resolveCopyOnWrite(at: address) }
        guard flags & 2 != 0 else { return false }  // console mode, nobody answering
        Console.write("C ")
        Console.write(hex: address)
        Console.write("\n")
        return Console.readByte() == UInt8(ascii: "0")
    }

    /// Ends the run for an exception the guest cannot handle.
    static func fatal(vector: UInt64, errorCode: UInt64, cr2: UInt64, instructionPointer: UInt64) -> Never {
        if Runtime.consoleMode {
            Console.write("F ")
            Console.write(hex: vector)
            Console.write(" ")
            Console.write(hex: errorCode)
            Console.write(" ")
            Console.write(hex: cr2)
            Console.write(" ")
            Console.write(hex: instructionPointer)
            Console.write("\n")
            Runtime.exit(1)
        }
        Hypercall.fatalException(vector: vector, errorCode: errorCode, cr2: cr2, instructionPointer: instructionPointer)
        while true { guest_hlt() }
    }
}

/// Called by the exception stubs with the frame [vector, error code, RIP, CS, RFLAGS, ...] (machine words).
/// Returns only when the faulting instruction should be retried.
@_cdecl("microvm_exception")
func microvmException(_ frame: UnsafePointer<UInt>) {
    let vector = UInt64(frame[0])
    let errorCode = UInt64(frame[1])
    let instructionPointer = UInt64(frame[2])
    let address = UInt64(guest_read_cr2())
    let page = address & ~0xFFF
    // #PF (vector 14) on a present page (P, bit 0) by a write (W/R, bit 1): perhaps copy-on-write.
    if vector == 14 && errorCode & 3 == 3 && page != Exceptions.lastResolvedPage
        && Exceptions.resolveCopyOnWrite(at: address)
    {
        Exceptions.lastResolvedPage = page
        guest_invlpg(UInt(truncatingIfNeeded: address))
        return
    }
    Exceptions.fatal(vector: vector, errorCode: errorCode, cr2: address, instructionPointer: instructionPointer)
}
