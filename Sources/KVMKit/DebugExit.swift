/// Why a vCPU stopped for the host debugger: `kvm_run.debug.arch` (`struct kvm_debug_exit_arch`).
public struct DebugExit: Hashable, Sendable {
    /// The exception vector: 1 (#DB) for a single step or hardware breakpoint, 3 (#BP) for `INT3`.
    public var exception: UInt32
    /// The guest-virtual (linear) address of the instruction the vCPU stopped at: the next one to run
    /// (after a step or a data watchpoint), or the breakpoint's.
    public var pc: UInt64
    /// DR6 as the stop set it: B0-B3 (bits 0-3) name the hardware breakpoint hit, BS (bit 14) a single step.
    public var dr6: UInt64
    /// DR7 at the stop.
    public var dr7: UInt64

    /// Makes a debug-exit record.
    public init(exception: UInt32, pc: UInt64, dr6: UInt64, dr7: UInt64) {
        self.exception = exception
        self.pc = pc
        self.dr6 = dr6
        self.dr7 = dr7
    }

    /// The stop was a single step: #DB with DR6.BS (bit 14).
    public var isSingleStep: Bool { exception == 1 && dr6 & (1 << 14) != 0 }

    /// The stop was a software breakpoint (`INT3`, #BP).
    public var isSoftwareBreakpoint: Bool { exception == 3 }

    /// Which hardware breakpoint (0-3) triggered the stop, from DR6.B0-B3, if any.
    public var hardwareBreakpoint: Int? {
        guard exception == 1 else { return nil }
        return (0..<4).first { dr6 & (1 << UInt64($0)) != 0 }
    }
}
