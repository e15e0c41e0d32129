internal import CKVM

/// One hardware breakpoint or watchpoint of the host debugger: a debug-address register (DR0-DR3) and its
/// DR7 fields (Intel SDM Vol. 3B §18.2, "Debug Registers").
public struct HardwareBreakpoint: Hashable, Sendable {
    /// What the breakpoint traps on: DR7 R/Wn (bits 16 + 4n and 17 + 4n).
    public enum Kind: UInt64, Hashable, Sendable {
        /// Instruction fetch at the address (R/W = 00): stops before the instruction runs.
        case execute = 0b00
        /// Data writes (R/W = 01): stops after the writing instruction.
        case write = 0b01
        /// Data reads or writes, not fetches (R/W = 11): stops after the accessing instruction.
        case readWrite = 0b11
    }

    /// How many bytes a watchpoint covers: DR7 LENn (bits 18 + 4n and 19 + 4n). The address must be
    /// aligned to it.
    public enum Length: UInt64, Hashable, Sendable {
        /// 1 byte (LEN = 00); the only length for ``Kind/execute``.
        case one = 0b00
        /// 2 bytes (LEN = 01).
        case two = 0b01
        /// 8 bytes (LEN = 10, long mode only).
        case eight = 0b10
        /// 4 bytes (LEN = 11).
        case four = 0b11

        /// The length in bytes.
        public var byteCount: UInt64 {
            switch self {
            case .one: 1
            case .two: 2
            case .four: 4
            case .eight: 8
            }
        }
    }

    /// The guest-virtual (linear) address.
    public var address: UInt64
    /// What it traps on.
    public var kind: Kind
    /// How many bytes it covers.
    public var length: Length

    /// Makes a breakpoint; traps if an execute breakpoint is not 1 byte long, or `address` is not aligned
    /// to `length` (the processor ignores the low address bits, so it would cover other bytes).
    public init(address: UInt64, kind: Kind, length: Length = .one) {
        precondition(kind != .execute || length == .one, "an execute breakpoint has length 1")
        precondition(address % length.byteCount == 0, "a watchpoint's address must be aligned to its length")
        self.address = address
        self.kind = kind
        self.length = length
    }

    /// An instruction breakpoint at `address`.
    public static func execute(_ address: UInt64) -> Self { Self(address: address, kind: .execute) }
}

/// What the host debugger asks of a vCPU: single-stepping, software breakpoints, up to four hardware
/// breakpoints. Set with ``VCPU/setGuestDebug(_:)``; stops arrive as ``VCPUExit/debug(_:)``.
///
/// The kernel type is `struct kvm_guest_debug` with control bits `KVM_GUESTDBG_*`.
///
/// On kvm_pvm: single steps and execute breakpoints stop as documented, but
/// stepping `HLT` reports a step past it instead of halting; `INT3` ends the run with an emulation
/// failure (``VCPUExit/internalError(suberror:)``, suberror 1, RIP at the `INT3`) instead of a debug
/// exit; data watchpoints never stop the vCPU; the exit's `dr7` reads 0.
public struct GuestDebug: Hashable, Sendable {
    /// How many hardware breakpoints x86 has (DR0-DR3).
    public static let hardwareBreakpointLimit = 4

    /// Stop after every instruction (`KVM_GUESTDBG_SINGLESTEP`: the trap flag, hidden from the guest).
    public var singleStep: Bool
    /// `INT3` (0xCC) in guest code stops the vCPU instead of raising #BP in the guest
    /// (`KVM_GUESTDBG_USE_SW_BP`): the debugger plants the byte itself.
    public var softwareBreakpoints: Bool
    /// Up to ``hardwareBreakpointLimit`` hardware breakpoints (`KVM_GUESTDBG_USE_HW_BP`), in DR0-DR3 order.
    public var hardwareBreakpoints: [HardwareBreakpoint]

    /// Makes a debug configuration; traps if there are more than four hardware breakpoints.
    public init(
        singleStep: Bool = false, softwareBreakpoints: Bool = false, hardwareBreakpoints: [HardwareBreakpoint] = []
    ) {
        precondition(hardwareBreakpoints.count <= Self.hardwareBreakpointLimit, "x86 has four hardware breakpoints")
        self.singleStep = singleStep
        self.softwareBreakpoints = softwareBreakpoints
        self.hardwareBreakpoints = hardwareBreakpoints
    }

    /// `kvm_guest_debug.control`: `KVM_GUESTDBG_ENABLE` plus one bit per feature in use.
    public var control: UInt32 {
        var bits = CKVM_GUESTDBG_ENABLE
        if singleStep { bits |= CKVM_GUESTDBG_SINGLESTEP }
        if softwareBreakpoints { bits |= CKVM_GUESTDBG_USE_SW_BP }
        if !hardwareBreakpoints.isEmpty { bits |= CKVM_GUESTDBG_USE_HW_BP }
        return bits
    }

    /// The DR7 value KVM loads while the guest runs: bit 10 (reserved, reads as 1), GE (bit 9, exact
    /// data breakpoints), and per breakpoint n: Gn (bit 2n + 1), R/Wn (bits 16 + 4n), LENn (bits 18 + 4n).
    public var dr7: UInt64 {
        guard !hardwareBreakpoints.isEmpty else { return 0 }
        var value: UInt64 = 1 << 10 | 1 << 9
        for (n, breakpoint) in hardwareBreakpoints.enumerated() {
            let n = UInt64(n)
            value |= 1 << (2 * n + 1)
            value |= breakpoint.kind.rawValue << (16 + 4 * n)
            value |= (breakpoint.kind == .execute ? 0 : breakpoint.length.rawValue) << (18 + 4 * n)
        }
        return value
    }

    var kernelValue: kvm_guest_debug {
        var kernel = kvm_guest_debug()
        kernel.control = control
        let addresses = hardwareBreakpoints.map(\.address) + Array(repeating: 0, count: 4 - hardwareBreakpoints.count)
        kernel.arch.debugreg = (addresses[0], addresses[1], addresses[2], addresses[3], 0, 0, 0, dr7)
        return kernel
    }
}
