public import KVMKit

/// What stops a machine in debug mode for its debugger (``Machine/setDebugSettings(_:)``).
///
/// Single steps and hardware breakpoints are the vCPU's (`KVM_SET_GUEST_DEBUG`); software breakpoints are
/// `INT3` bytes the debugger planted itself in guest memory (``Machine/patchVirtual(_:_:)``), listed here so
/// that the machine recognises the stop at them on every kind of KVM.
public struct DebugSettings: Hashable, Sendable {
    /// Stop after every instruction.
    public var singleStep: Bool
    /// Up to four hardware breakpoints (DR0-DR3), in slot order.
    public var hardwareBreakpoints: [HardwareBreakpoint]
    /// Guest-virtual addresses where the debugger planted `INT3`.
    public var softwareBreakpoints: Set<UInt64>

    /// Settings; traps with more than four hardware breakpoints (x86 has DR0-DR3).
    public init(
        singleStep: Bool = false, hardwareBreakpoints: [HardwareBreakpoint] = [], softwareBreakpoints: Set<UInt64> = []
    ) {
        precondition(
            hardwareBreakpoints.count <= GuestDebug.hardwareBreakpointLimit, "x86 has four hardware breakpoints")
        self.singleStep = singleStep
        self.hardwareBreakpoints = hardwareBreakpoints
        self.softwareBreakpoints = softwareBreakpoints
    }

    /// What KVM is told: the steps, the debug registers, and `INT3` interception when any is planted.
    var guestDebug: GuestDebug {
        GuestDebug(
            singleStep: singleStep, softwareBreakpoints: !softwareBreakpoints.isEmpty,
            hardwareBreakpoints: hardwareBreakpoints)
    }
}

/// Why a machine in debug mode stopped (``RunOutcome/debugStop(_:)``). Every case carries the guest-virtual
/// address of the next instruction to run, which is where RIP stands.
public enum DebugStop: Equatable, Sendable {
    /// One instruction ran (``DebugSettings/singleStep``).
    case singleStep(pc: UInt64)
    /// The hardware breakpoint in debug register `slot` (0-3) triggered: before an instruction at `pc`, or,
    /// for a data breakpoint, after the access.
    case hardwareBreakpoint(slot: Int, pc: UInt64)
    /// The guest reached an `INT3` at `pc`: a debug exit with #BP where KVM intercepts it, or, on a KVM that
    /// emulates guest code (kvm_pvm), the emulation failure at an address in
    /// ``DebugSettings/softwareBreakpoints``. RIP stays at the `INT3`.
    case softwareBreakpoint(pc: UInt64)
    /// ``Machine/interrupter`` stopped the run.
    case interrupted(pc: UInt64)
    /// A debug exit of another kind (a #DB whose DR6 names neither a step nor a breakpoint).
    case other(DebugExit)

    /// Where the guest stopped.
    public var pc: UInt64 {
        switch self {
        case .singleStep(let pc), .hardwareBreakpoint(_, let pc), .softwareBreakpoint(let pc), .interrupted(let pc):
            pc
        case .other(let exit): exit.pc
        }
    }

    /// The stop a debug exit describes.
    init(_ exit: DebugExit) {
        if exit.isSingleStep {
            self = .singleStep(pc: exit.pc)
        } else if let slot = exit.hardwareBreakpoint {
            self = .hardwareBreakpoint(slot: slot, pc: exit.pc)
        } else if exit.isSoftwareBreakpoint {
            self = .softwareBreakpoint(pc: exit.pc)
        } else {
            self = .other(exit)
        }
    }
}

// Debug mode: what a debugger (the GDB stub in MicroVMDebug) needs of a machine. In debug mode ``run()``
// returns ``RunOutcome/debugStop(_:)`` for steps, breakpoints and interruptions instead of treating a debug
// exit as an unexpected one and an interruption as the end of the run; faults, the timeout and the guest's
// own ends are reported as always.

extension Machine {
    /// Enters debug mode with `settings`, changes them, or (`nil`) leaves debug mode.
    ///
    /// In debug mode ``run()`` returns ``RunOutcome/debugStop(_:)`` after a single step, at a breakpoint,
    /// and when ``interrupter`` stops it (which then leaves the machine runnable, unlike outside debug mode).
    /// Leaving debug mode drops an interruption no run has seen yet: it was meant for the debugger.
    ///
    /// The corresponding KVM ioctl is `KVM_SET_GUEST_DEBUG`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_GUEST_DEBUG` (EINVAL for a breakpoint
    ///   address the vCPU refuses); the previous settings then stay in force.
    public func setDebugSettings(_ settings: DebugSettings?) throws(KVMError) {
        if settings?.guestDebug != debugSettings?.guestDebug {
            try vcpu.setGuestDebug(settings?.guestDebug)
        }
        if settings == nil && debugSettings != nil { interrupter.clear() }
        debugSettings = settings
    }

    /// In debug mode, a requested interruption as a debug stop (and no longer requested); otherwise `nil`.
    func debuggerInterruption() -> RunOutcome? {
        guard debugSettings != nil, interrupter.isRequested else { return nil }
        interrupter.clear()
        vcpu.immediateExit = false
        return .debugStop(.interrupted(pc: rip()))
    }

    // MARK: Registers where the guest stopped

    /// The vCPU's general registers, RIP and RFLAGS where the guest stopped (before its first run: the entry
    /// state). Read from `kvm_run`, where KVM leaves them after every exit: no ioctl.
    ///
    /// Setting it stages the registers in `kvm_run` for the next run to load (no ioctl either), so read them
    /// here, not with ``registers()``, until the machine has run again.
    public var currentRegisters: Registers {
        get { vcpu.syncedRegisters() }
        set { vcpu.stageRegisters(newValue) }
    }

    /// The vCPU's special registers (segments, control registers, EFER) where the guest stopped, from
    /// `kvm_run` (no ioctl).
    public var currentSpecialRegisters: SpecialRegisters { vcpu.syncedSpecialRegisters() }

    /// Replaces the special registers at once, so that a state the vCPU refuses is an error here rather than
    /// at the next run, and keeps `kvm_run`'s copy (``currentSpecialRegisters``) the same.
    ///
    /// The corresponding KVM ioctl is `KVM_SET_SREGS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_SREGS` (EINVAL for an inconsistent
    ///   state, such as EFER.LMA without CR0.PG); nothing changes then.
    public func setCurrentSpecialRegisters(_ registers: SpecialRegisters) throws(KVMError) {
        try vcpu.setSpecialRegisters(registers)
        // KVM may adjust what it was given (bits the vCPU cannot honour): keep what it holds now.
        vcpu.stageSpecialRegisters(try vcpu.specialRegisters())
    }

    /// The x87 and SSE state (ST0-ST7, control and status words, XMM0-XMM15, MXCSR), from the XSAVE area:
    /// `KVM_GET_FPU` would leave MXCSR out (the kernel does not copy it).
    ///
    /// The corresponding KVM ioctl is `KVM_GET_XSAVE`.
    public func floatingPointState() throws(KVMError) -> FPUState {
        try vcpu.xsave().legacyState
    }

    /// Replaces the x87 and SSE state, keeping the rest of the XSAVE area.
    ///
    /// The corresponding KVM ioctls are `KVM_GET_XSAVE` and `KVM_SET_XSAVE`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` (EINVAL for reserved MXCSR bits).
    public func setFloatingPointState(_ state: FPUState) throws(KVMError) {
        var area = try vcpu.xsave()
        area.legacyState = state
        try vcpu.setXSave(area)
    }

    // MARK: Memory as a debugger writes it

    /// Writes `bytes` at guest-virtual `address`, through the tables in CR3, whatever the pages' permissions:
    /// read-only code and copy-on-write pages too (the frame itself is written, so every mapping of it sees
    /// the bytes). This is how a debugger plants a breakpoint. Returns false, having written nothing, if any
    /// byte is not mapped or not in RAM.
    @discardableResult
    public func patchVirtual(_ address: UInt64, _ bytes: [UInt8]) -> Bool {
        guard let pieces = physicalPieces(of: address, count: bytes.count, writable: false) else { return false }
        for piece in pieces { memory.write(bytes[piece.range], at: piece.physical) }
        return true
    }
}
