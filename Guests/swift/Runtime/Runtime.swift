// The entry into Swift, and how a guest ends.
//
// start64.S / start32.S call microvm_start with the boot-information block's address (RDI / EDI). It calls the
// guest's `guestMain(_:)` (every guest defines one, in its own file of the same module) and halts when it
// returns. Nothing else runs first: the heap is set up by the first allocation (support.c), the exception
// handlers only when a guest asks (Exceptions.install()), so a guest that only prints pays for nothing more.

import GuestSupport

@_cdecl("microvm_start")
func microvmStart(_ address: UInt) -> Never {
    guest_set_boot_info(address)  // for Runtime.halt(), the exception handler and the heap (support.c)
    guestMain(BootInfo(address: address))
    Runtime.halt()
}

/// How a guest ends its run.
enum Runtime {
    /// The exit port: a write ends the run, the host exits with the value's low 8 bits.
    static let exitPort: UInt16 = 0xF4

    /// The boot information the host passed.
    static var bootInfo: BootInfo { BootInfo(address: guest_boot_info()) }

    /// Whether the host has no hypercall port and reads reports from the console (boot-info flag bit 0:
    /// the QEMU oracle, where `hlt` would never end the run).
    static var consoleMode: Bool { bootInfo.flags & 1 != 0 }

    /// Ends the run with status 0: `hlt` (microvm); in console mode first `out` 0 to the exit port, which
    /// QEMU's isa-debug-exit turns into status 1 and microvm into status 0.
    static func halt() -> Never {
        if consoleMode { guest_outb(exitPort, 0) }
        while true { guest_hlt() }
    }

    /// Ends the run with `status` (the host exits with it).
    static func exit(_ status: UInt8) -> Never {
        guest_outb(exitPort, status)
        while true { guest_hlt() }
    }
}
