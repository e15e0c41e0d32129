public import PageTables

/// Every fixed guest-physical address and port that guests rely on, in one place.
public enum Layout {
    /// Page 0 is never mapped, so a null pointer faults.
    public static let nullPage: UInt64 = 0
    /// The GDT: null, 0x08 code, 0x10 data.
    public static let gdtAddress: UInt64 = 0x1000
    /// The boot-information block, passed in RDI / EDI.
    public static let bootInfoAddress: UInt64 = 0x2000
    /// Free for the guest: the probe runtime keeps its IDT at 0x3000 and its hypercall record at 0x3800.
    public static let guestScratch: Range<UInt64> = 0x3000..<0x4000
    /// The probe list (32-byte probe records), when the host gives one.
    public static let probeListAddress: UInt64 = 0x4000
    /// Frames for resolving copy-on-write faults: this much RAM right below the arena, never mapped.
    public static let copyOnWriteScratchSize: UInt64 = 64 << 12
    /// The probe runtime's user stack, for probes that run at CPL 3: the lowest page of the stack area,
    /// made user-accessible by ``BootImage/setProbes(_:flags:)`` when a probe runs there.
    public static let userStack: Range<UInt64> = 0x8000..<0x9000
    /// Initial stack pointer; the stack grows down towards 0x8000.
    public static let stackTop: UInt64 = 0x8_0000
    /// Where the image goes unless ``MachineConfiguration/loadAddress`` says otherwise.
    public static let defaultLoadAddress: UInt64 = 0x10_0000
    /// Default guest RAM.
    public static let defaultMemorySize: UInt64 = 16 << 20
    /// Largest guest RAM: stays below the PCI / APIC hole under 4 GiB on every host.
    public static let maximumMemorySize: UInt64 = 3 << 30
    /// The selector of the GDT's flat code segment (CS).
    public static let codeSelector: UInt16 = 0x08
    /// The selector of the GDT's flat data segment (DS, ES, SS, FS, GS).
    public static let dataSelector: UInt16 = 0x10

    /// Console: each byte written goes to the machine's console (``MachineConfiguration/console``).
    public static let consolePort: UInt16 = 0x3F8
    /// Exit: a write ends the run with ``RunOutcome/exited(status:)``, the value's low 8 bits.
    public static let exitPort: UInt16 = 0xF4
    /// Hypercall: a 32-bit write of the address of a hypercall record (see ``HypercallOperation``).
    public static let hypercallPort: UInt16 = 0x510

    /// Bytes of page-table arena reserved at the top of RAM: enough for every mapping with 4 KiB leaves
    /// (one table per 2 MiB or 4 MiB of each mapping, plus the directories above and the edges), and 64
    /// spare tables for copy-on-write splits at run time.
    ///
    /// - Parameters:
    ///   - memorySize: guest RAM in bytes, identity-mapped.
    ///   - extraMappings: the mappings added on top.
    ///   - architecture: the paging mode, which sets how many tables a range needs.
    public static func arenaSize(memorySize: UInt64, extraMappings: [Mapping], architecture: Architecture) -> UInt64 {
        func tables(_ length: UInt64) -> UInt64 {
            switch architecture {
            case .amd64: (length >> 21) + (length >> 30) + (length >> 39) + 6
            case .i686: (length >> 22) + 2
            }
        }
        let total = extraMappings.reduce(1 + 64 + tables(memorySize)) { $0 + tables($1.length) }
        return total << 12
    }
}
