public import GDBRemote
import KVMKit
public import MicroVM

/// A ``Machine`` as gdb sees it through the stub: registers from the vCPU, memory at guest-virtual
/// addresses through the guest's current page tables, breakpoints in the debug registers or planted as
/// `INT3`, runs that stop for the debugger.
///
/// ```swift
/// let machine = try Machine(configuration: configuration)
/// let target = try MachineDebugTarget(machine: machine)      // debug mode: nothing has run yet
/// let end = try GDBServer(endpoint: GDBEndpoint(port: 1234)).serve(target)
/// // end: detached (run the machine on), killed, disconnected, or the guest ended: target.end
/// ```
///
/// Confined to the machine's thread, like the machine; only the interrupt handler runs elsewhere.
///
/// - Breakpoints: `Z1` takes a debug register (DR0-DR3); `Z0` takes a free one too, and is planted as an
///   `INT3` byte when none is free (a later `Z1` moves a `Z0` out of its register into memory). Memory
///   reads hide planted bytes. A stop at a planted byte is a breakpoint whether KVM reports a #BP debug
///   exit (kvm_intel, kvm_amd) or fails to emulate the `INT3` (kvm_pvm).
/// - Watchpoints (`Z2`-`Z4`) are refused (an empty reply): this machine kind's KVM never stops on data
///   breakpoints, so accepting them would promise stops that never come. gdb's software watchpoints
///   (`set can-use-hw-watchpoints 0`: single steps, comparing values) work everywhere.
/// - Stepping a `hlt` runs it as `continue` would, so the guest ends as it does without a debugger
///   (kvm_pvm would otherwise step past it).
/// - A fault is reported as a signal (``GDBSignal/segmentationFault`` for a page fault, ...) with the
///   registers as they were; the next resume reports the guest terminated by that signal. ``end`` then
///   holds the fault for the one-line report.
public final class MachineDebugTarget: GDBTarget {
    /// The machine debugged.
    public let machine: Machine
    /// amd64, or i386 for an i686 machine: the register layout gdb is given.
    public let architecture: GDBArchitecture

    /// How the guest ended: its own end (``RunOutcome``) or a failure (``RunError``), once it has.
    public private(set) var end: Result<RunOutcome, RunError>?
    /// Whether gdb killed the guest (`k`).
    public private(set) var killed = false
    /// Whether gdb detached (`D`): the machine has left debug mode, and may run on.
    public private(set) var detached = false

    /// What each debug register holds.
    private var slots: [Slot?] = Array(repeating: nil, count: GuestDebug.hardwareBreakpointLimit)
    /// `Z0` breakpoints planted in memory.
    private var planted = GDBSoftwareBreakpoints()
    private var settings = DebugSettings()
    /// The slot of each hardware breakpoint handed to KVM, in DR0-DR3 order (KVM's list has no gaps).
    private var registerSlots: [Int] = []

    /// A debug register's use: an execute breakpoint, asked for as `Z0` or `Z1`.
    private struct Slot: Hashable {
        var address: UInt64
        var kind: GDBBreakpointKind
    }

    /// The x86 `hlt` instruction.
    private static let haltInstruction: UInt8 = 0xF4

    /// Puts `machine` in debug mode, stopped where it stands (before its first instruction, for a new one).
    ///
    /// - Throws: ``KVMError`` when KVM refuses guest debugging (`KVM_SET_GUEST_DEBUG`).
    public init(machine: Machine) throws(KVMError) {
        self.machine = machine
        self.architecture = machine.configuration.architecture == .amd64 ? .amd64 : .i386
        try machine.setDebugSettings(settings)
    }

    // MARK: Registers

    public func readRegisters() throws -> GDBRegisterFile {
        let state = try RegisterState(machine)
        return state.file(for: architecture)
    }

    public func writeRegisters(_ registers: GDBRegisterFile) throws {
        guard end == nil else { throw GDBTargetError.invalidArgument("the guest has ended") }
        var state = try RegisterState(machine)
        let before = state
        state.update(from: registers)
        try state.apply(to: machine, changedFrom: before)
    }

    // MARK: Memory

    public func readMemory(at address: UInt64, count: Int) throws -> [UInt8] {
        guard let bytes = machine.readVirtual(address, count: count) else {
            throw GDBTargetError.memoryFault(address: address)
        }
        return planted.hiding(bytes, at: address)
    }

    public func writeMemory(at address: UInt64, bytes: [UInt8]) throws {
        var kept = planted
        guard machine.patchVirtual(address, kept.planting(bytes, at: address)) else {
            throw GDBTargetError.memoryFault(address: address)
        }
        planted = kept
    }

    // MARK: Breakpoints

    public func insertBreakpoint(_ kind: GDBBreakpointKind, at address: UInt64, length: Int) throws {
        switch kind {
        case .software:
            if planted.contains(address) || slots.contains(Slot(address: address, kind: .software)) { return }
            // Where nothing can be read, nothing can be planted: refuse as a planted byte would.
            guard machine.readVirtual(address, count: 1) != nil else {
                throw GDBTargetError.memoryFault(address: address)
            }
            if let free = slots.firstIndex(of: nil) {
                try occupy(free, with: Slot(address: address, kind: .software))
            } else {
                try plant(at: address)
            }
        case .hardware:
            if slots.contains(Slot(address: address, kind: .hardware)) { return }
            var free = slots.firstIndex(of: nil)
            if free == nil, let moved = slots.firstIndex(where: { $0?.kind == .software }) {
                // A software breakpoint can live in memory: give its register to the one that cannot.
                try plant(at: slots[moved]!.address)
                free = moved
            }
            guard let free else { throw GDBTargetError.resourceExhausted }
            try occupy(free, with: Slot(address: address, kind: .hardware))
        case .writeWatchpoint, .readWatchpoint, .accessWatchpoint:
            throw GDBTargetError.unsupported
        }
    }

    public func removeBreakpoint(_ kind: GDBBreakpointKind, at address: UInt64, length: Int) throws {
        switch kind {
        case .software:
            if let slot = slots.firstIndex(of: Slot(address: address, kind: .software)) {
                slots[slot] = nil
                try applySettings()
            } else if planted.contains(address) {
                try planted.remove(at: address, writing: writeByte)
                try applySettings()
            }
        case .hardware:
            if let slot = slots.firstIndex(of: Slot(address: address, kind: .hardware)) {
                slots[slot] = nil
                try applySettings()
            }
        case .writeWatchpoint, .readWatchpoint, .accessWatchpoint:
            throw GDBTargetError.unsupported
        }
    }

    /// Puts a breakpoint in debug register slot `index`, or leaves every slot as it was if KVM refuses it.
    private func occupy(_ index: Int, with slot: Slot) throws {
        let saved = slots
        slots[index] = slot
        do {
            try applySettings()
        } catch {
            slots = saved
            throw error
        }
    }

    /// Writes `INT3` at `address` (saving the byte) and tells the machine it is there.
    private func plant(at address: UInt64) throws {
        try planted.insert(at: address, reading: readByte, writing: writeByte)
        if let slot = slots.firstIndex(of: Slot(address: address, kind: .software)) { slots[slot] = nil }
        try applySettings()
    }

    private func readByte(_ address: UInt64) throws(GDBTargetError) -> UInt8 {
        guard let byte = machine.readVirtual(address, count: 1)?.first else { throw .memoryFault(address: address) }
        return byte
    }

    private func writeByte(_ address: UInt64, _ byte: UInt8) throws(GDBTargetError) {
        guard machine.patchVirtual(address, [byte]) else { throw .memoryFault(address: address) }
    }

    /// Hands the breakpoints to the machine (KVM_SET_GUEST_DEBUG when they changed).
    private func applySettings(singleStep: Bool? = nil) throws {
        var next = settings
        if let singleStep { next.singleStep = singleStep }
        let used = slots.indices.filter { slots[$0] != nil }
        next.hardwareBreakpoints = used.map { HardwareBreakpoint.execute(slots[$0]!.address) }
        next.softwareBreakpoints = Set(planted.originals.keys)
        do {
            try machine.setDebugSettings(next)
        } catch {
            throw GDBTargetError.invalidArgument("\(error)")
        }
        settings = next
        registerSlots = used
    }

    // MARK: Running

    public func resume(_ mode: GDBResumeMode) throws -> GDBStopReason {
        if let end { return Self.terminalStop(for: end) }
        // kvm_pvm steps past `hlt`; run it instead, so that the guest ends as it would without a debugger.
        let step =
            mode == .step && (try? readMemory(at: machine.currentRegisters.rip, count: 1).first) != Self.haltInstruction
        try applySettings(singleStep: step)
        while true {
            let outcome: RunOutcome
            do {
                outcome = try machine.run()
            } catch .kvmFailed(let error) {
                end = .failure(.kvmFailed(error))
                throw error
            } catch {
                end = .failure(error)
                return .signal(Self.signal(for: error))
            }
            switch outcome {
            case .debugStop(let stop):
                return stopReason(for: stop)
            case .snapshotRequested:
                // Nothing takes snapshots under gdb: the guest runs on (a step has completed, though).
                if step { return .signal(.trap) }
            case .halted, .ready, .returned:
                end = .success(outcome)
                return .exited(status: 0)
            case .exited(let status):
                end = .success(outcome)
                return .exited(status: status)
            }
        }
    }

    private func stopReason(for stop: DebugStop) -> GDBStopReason {
        switch stop {
        case .singleStep:
            return .signal(.trap)
        case .hardwareBreakpoint(let register, _):
            guard registerSlots.indices.contains(register), let use = slots[registerSlots[register]] else {
                return .signal(.trap)
            }
            return use.kind == .software ? .softwareBreakpoint : .hardwareBreakpoint
        case .softwareBreakpoint(let pc):
            // An INT3 of the guest's own is a trap, not one of gdb's breakpoints.
            return planted.contains(pc) ? .softwareBreakpoint : .signal(.trap)
        case .interrupted:
            return .signal(.interrupt)
        case .other:
            return .signal(.trap)
        }
    }

    /// What gdb is told when the guest has ended and is asked to run again.
    private static func terminalStop(for end: Result<RunOutcome, RunError>) -> GDBStopReason {
        switch end {
        case .success(.exited(let status)): .exited(status: status)
        case .success: .exited(status: 0)
        case .failure(let error): .terminated(signal(for: error))
        }
    }

    /// The signal a failed run shows as in gdb.
    static func signal(for error: RunError) -> GDBSignal {
        switch error {
        case .fault(let fault):
            switch fault.kind {
            case .exception(0, _): .floatingPointException
            case .exception(6, _), .emulationFailure: .illegalInstruction
            case .exception(3, _): .trap
            case .unbackedMemory: .busError
            case .badHypercall: .badSystemCall
            case .tripleFault, .exception, .unknownPort: .segmentationFault
            case .entryFailed, .internalError, .unexpectedExit: .abort
            }
        case .timeout: .alarm
        case .interrupted: .interrupt
        case .consoleFailed: .brokenPipe
        case .deviceFailed, .kvmFailed, .needsReset, .dirtyTrackingLost: .abort
        }
    }

    public func makeInterruptHandler() -> @Sendable () -> Void {
        let interrupter = machine.interrupter
        return { interrupter.interrupt() }
    }

    public func detach() {
        detached = true
        // The bytes go back and KVM stops watching: the guest runs on as if no debugger had been there.
        try? planted.removeAll(writing: writeByte)
        slots = Array(repeating: nil, count: slots.count)
        try? machine.setDebugSettings(nil)
    }

    public func kill() {
        killed = true
        try? planted.removeAll(writing: writeByte)
    }
}

extension GDBSignal {
    /// `SIGPIPE` (13): the guest's console output could not be delivered.
    static let brokenPipe = Self(rawValue: 13)
    /// `SIGSYS` (12 in gdb's numbering): a hypercall the host refused.
    static let badSystemCall = Self(rawValue: 12)
}
