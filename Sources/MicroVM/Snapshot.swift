import Glibc
public import KVMKit
public import PageTables

/// Everything of one vCPU a snapshot holds: what a restored guest continues from.
public struct VCPUState: Equatable, Sendable {
    /// The general registers, RIP and RFLAGS (`KVM_GET_REGS`).
    public var registers: Registers
    /// Segments, descriptor tables, control registers, EFER (`KVM_GET_SREGS`).
    public var specialRegisters: SpecialRegisters
    /// x87, SSE and AVX state (`KVM_GET_XSAVE`).
    public var xsave: XSaveArea
    /// XCR0 and friends (`KVM_GET_XCRS`), where KVM has them.
    public var extendedControlRegisters: ExtendedControlRegisters?
    /// The model-specific registers of ``VCPUState/savedMSRs`` that KVM lets us read (`KVM_GET_MSRS`).
    public var modelSpecificRegisters: ModelSpecificRegisters
    /// Pending and injected exceptions, interrupts and NMIs (`KVM_GET_VCPU_EVENTS`).
    public var events: VCPUEvents
    /// DR0-DR3, DR6, DR7 (`KVM_GET_DEBUGREGS`).
    public var debugRegisters: DebugRegisters

    /// The MSRs a snapshot keeps, where KVM lists them: the system-call and `SYSENTER` entry points, the
    /// kernel GS base, TSC_AUX, PAT, MISC_ENABLE and the TSC (FS and GS bases and EFER ride in the special
    /// registers).
    public static let savedMSRs: [UInt32] = [
        0x10,  // IA32_TIME_STAMP_COUNTER
        0x174, 0x175, 0x176,  // IA32_SYSENTER_CS / ESP / EIP
        0x1A0,  // IA32_MISC_ENABLE
        0x277,  // IA32_PAT
        0xC000_0081, 0xC000_0082, 0xC000_0083, 0xC000_0084,  // STAR, LSTAR, CSTAR, FMASK
        0xC000_0102,  // IA32_KERNEL_GS_BASE
        0xC000_0103,  // IA32_TSC_AUX
    ]

    /// Reads the whole state of `vcpu` (seven ioctls).
    static func capture(_ vcpu: VCPU, msrs: [UInt32]) throws(KVMError) -> VCPUState {
        VCPUState(
            registers: try vcpu.registers(), specialRegisters: try vcpu.specialRegisters(), xsave: try vcpu.xsave(),
            extendedControlRegisters: try? vcpu.extendedControlRegisters(),
            modelSpecificRegisters: try vcpu.modelSpecificRegisters(msrs), events: try vcpu.events(),
            debugRegisters: try vcpu.debugRegisters())
    }

    /// Writes the whole state into `vcpu` (seven ioctls): a restore into a fresh vCPU.
    func apply(to vcpu: VCPU) throws(KVMError) {
        // Special registers first: they set the mode the others are read in.
        try vcpu.setSpecialRegisters(specialRegisters)
        try vcpu.setRegisters(registers)
        try vcpu.setXSave(xsave)
        if let extendedControlRegisters { try vcpu.setExtendedControlRegisters(extendedControlRegisters) }
        _ = try vcpu.setModelSpecificRegisters(modelSpecificRegisters)
        try vcpu.setEvents(events)
        try vcpu.setDebugRegisters(debugRegisters)
    }
}

/// Why a snapshot could not be taken, restored, reset to, saved or loaded: one line for a person.
public enum SnapshotError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed (named, with its errno).
    case systemCallFailed(String, errno: Int32)
    /// A KVM call failed.
    case kvmFailed(KVMError)
    /// Building the machine failed.
    case machineFailed(MachineError)
    /// The machine's last run ended with an error: its state is not one to keep.
    case notStopped(String)
    /// ``Machine/reset(allState:)`` on a machine that has no snapshot to go back to, or cannot track what the guest
    /// writes (the reason says which).
    case notResettable(String)
    /// Restoring needs something this host lacks (the reason says what).
    case hostUnsuitable(String)
    /// KVM would not take the snapshot's vCPU state (`EINVAL` from the call named): the state is corrupt, or
    /// it was captured on a CPU with features this one lacks.
    case stateRefused(KVMError)
    /// A snapshot file could not be used: `problem` names what is wrong with it.
    case invalidFile(path: String, problem: String)
    /// Compaction could not walk or rebuild the snapshot's tables (the detail says which).
    case compactionFailed(String)

    /// One line for a person, naming what went wrong and the values involved.
    public var description: String {
        switch self {
        case .systemCallFailed(let call, let code): "\(call) failed: \(errnoText(code))"
        case .kvmFailed(let error): "\(error)"
        case .machineFailed(let error): "\(error)"
        case .notStopped(let cause): "the machine cannot be snapshotted: its last run ended with \(cause)"
        case .notResettable(let reason): "the machine cannot be reset: \(reason)"
        case .hostUnsuitable(let reason): "the snapshot cannot be restored on this host: \(reason)"
        case .stateRefused(let error):
            "KVM refused the snapshot's vCPU state (\(error)): it is corrupt, or it was taken on a CPU with features this one lacks"
        case .invalidFile(let path, let problem): "snapshot file '\(path)' \(problem)"
        case .compactionFailed(let detail): "the snapshot cannot be compacted: \(detail)"
        }
    }
}

/// Where a page-table arena stood: what a restored machine needs to allocate tables from the same free space.
public struct ArenaState: Equatable, Sendable {
    /// The arena: `[base, end)`.
    public var base: UInt64, end: UInt64
    /// The next never-used table.
    public var next: UInt64
    /// Tables given back, reused first.
    public var freeTables: [UInt64]

    /// An arena `[base, end)` whose never-used tables start at `next`, with `freeTables` given back.
    public init(base: UInt64, end: UInt64, next: UInt64, freeTables: [UInt64]) {
        self.base = base
        self.end = end
        self.next = next
        self.freeTables = freeTables
    }
}

/// A machine frozen at a point: its memory image, its vCPU and the roots of its address spaces. Restore
/// it into new machines (``Machine/init(restoring:host:configuration:)``), reset a machine back to it
/// (``Machine/reset(allState:)``), or save it to a file (``write(to:)``) and load it again
/// (``init(contentsOf:architecture:)``).
///
/// Immutable and `Sendable`: any number of machines, on any threads, can be restored from one snapshot, and
/// they share the pages of its image that none of them writes.
public final class Snapshot: Sendable {
    /// The configuration of the machine it was taken from (its image bytes are not kept: the memory holds
    /// them). A restored machine takes its layout from here.
    public let configuration: MachineConfiguration
    /// Guest RAM as it was.
    public let image: SnapshotImage
    /// The vCPU as it was.
    public let vcpu: VCPUState
    /// The roots of the registered address spaces, the host's boot root first.
    public let roots: [UInt64]
    /// The page-table arena.
    public let arena: ArenaState
    /// The next free copy-on-write scratch frame (`[scratchNext, arena.base)` are free).
    public let scratchNext: UInt64
    /// Which large leaves the tables may use and the vCPU walks.
    public let allowedLeafSizes: AllowedLeafSizes, walkableLeafSizes: AllowedLeafSizes
    /// The guest's exported functions and call area, if it had made the ready hypercall, and whether it
    /// was waiting for a call.
    let calls: CallInterface?, waitingForCall: Bool

    /// The names of the functions the guest exports, if it was ready for calls.
    public var exportedFunctions: [String] { calls?.names ?? [] }

    init(
        configuration: MachineConfiguration, image: SnapshotImage, vcpu: VCPUState, roots: [UInt64], arena: ArenaState,
        scratchNext: UInt64, allowedLeafSizes: AllowedLeafSizes, walkableLeafSizes: AllowedLeafSizes,
        calls: CallInterface?, waitingForCall: Bool
    ) {
        var configuration = configuration
        configuration.image = []
        configuration.console = .discard
        configuration.trace = nil
        self.configuration = configuration
        self.image = image
        self.vcpu = vcpu
        self.roots = roots
        self.arena = arena
        self.scratchNext = scratchNext
        self.allowedLeafSizes = allowedLeafSizes
        self.walkableLeafSizes = walkableLeafSizes
        self.calls = calls
        self.waitingForCall = waitingForCall
    }

    /// The guest's architecture.
    public var architecture: Architecture { configuration.architecture }
    /// Guest RAM in bytes.
    public var memorySize: UInt64 { image.size }
}
