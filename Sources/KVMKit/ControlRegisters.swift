/// Bits of control register CR0 (Intel SDM Vol. 3A §2.5, "Control Registers").
///
/// Bits not named here are preserved in ``rawValue``.
public struct CR0: OptionSet, Hashable, Sendable {
    /// The register value, all 64 bits.
    public var rawValue: UInt64
    /// Makes a CR0 value from its bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// CR0.PE (bit 0), Protection Enable: protected mode.
    public static let protectionEnable = Self(rawValue: 1 << 0)
    /// CR0.MP (bit 1), Monitor Coprocessor: WAIT/FWAIT honours TS; set for SSE use.
    public static let monitorCoprocessor = Self(rawValue: 1 << 1)
    /// CR0.EM (bit 2), Emulation: x87/SSE instructions fault; must be clear for SSE.
    public static let emulation = Self(rawValue: 1 << 2)
    /// CR0.TS (bit 3), Task Switched.
    public static let taskSwitched = Self(rawValue: 1 << 3)
    /// CR0.ET (bit 4), Extension Type: hard-wired to 1 on modern processors.
    public static let extensionType = Self(rawValue: 1 << 4)
    /// CR0.NE (bit 5), Numeric Error: native x87 error reporting (#MF).
    public static let numericError = Self(rawValue: 1 << 5)
    /// CR0.WP (bit 16), Write Protect: supervisor writes honour read-only pages.
    public static let writeProtect = Self(rawValue: 1 << 16)
    /// CR0.AM (bit 18), Alignment Mask.
    public static let alignmentMask = Self(rawValue: 1 << 18)
    /// CR0.NW (bit 29), Not Write-through.
    public static let notWriteThrough = Self(rawValue: 1 << 29)
    /// CR0.CD (bit 30), Cache Disable.
    public static let cacheDisable = Self(rawValue: 1 << 30)
    /// CR0.PG (bit 31), Paging.
    public static let paging = Self(rawValue: 1 << 31)
}

/// Bits of control register CR4 (Intel SDM Vol. 3A §2.5, "Control Registers").
///
/// Bits not named here are preserved in ``rawValue``.
public struct CR4: OptionSet, Hashable, Sendable {
    /// The register value, all 64 bits.
    public var rawValue: UInt64
    /// Makes a CR4 value from its bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// CR4.PSE (bit 4), Page Size Extensions: 4 MiB pages in 32-bit paging.
    public static let pse = Self(rawValue: 1 << 4)
    /// CR4.PAE (bit 5), Physical Address Extension: required for long mode.
    public static let pae = Self(rawValue: 1 << 5)
    /// CR4.PGE (bit 7), Page Global Enable.
    public static let pge = Self(rawValue: 1 << 7)
    /// CR4.OSFXSR (bit 9): the OS supports FXSAVE/FXRSTOR; enables SSE instructions.
    public static let osfxsr = Self(rawValue: 1 << 9)
    /// CR4.OSXMMEXCPT (bit 10): the OS handles unmasked SIMD floating-point exceptions (#XM).
    public static let osxmmexcpt = Self(rawValue: 1 << 10)
    /// CR4.LA57 (bit 12): 5-level paging.
    public static let la57 = Self(rawValue: 1 << 12)
}

/// Bits of the IA32_EFER model-specific register, MSR C000_0080H (Intel SDM Vol. 3A §2.2.1, Table 2-1).
///
/// Bits not named here are preserved in ``rawValue``.
public struct EFER: OptionSet, Hashable, Sendable {
    /// The register value, all 64 bits.
    public var rawValue: UInt64
    /// Makes an EFER value from its bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// EFER.SCE (bit 0), System Call Extensions: SYSCALL/SYSRET.
    public static let sce = Self(rawValue: 1 << 0)
    /// EFER.LME (bit 8), Long Mode Enable.
    public static let lme = Self(rawValue: 1 << 8)
    /// EFER.LMA (bit 10), Long Mode Active: set by the CPU when LME and CR0.PG are both set.
    public static let lma = Self(rawValue: 1 << 10)
    /// EFER.NXE (bit 11), Execute-Disable Enable: bit 63 of paging entries is honoured.
    public static let nxe = Self(rawValue: 1 << 11)
}
