/// What a debugged machine offers the GDB stub: registers, memory through the guest's own translation,
/// breakpoints, and running until a stop.
///
/// A ``GDBSession`` calls every requirement on the thread that runs the session (for a KVM guest, the
/// vCPU's own thread), one at a time. The one exception is the handler from ``makeInterruptHandler()``,
/// which a watcher thread calls while ``resume(_:)`` runs.
///
/// Errors: throw ``GDBTargetError`` to choose the reply gdb sees (``GDBTargetError/unsupported`` makes gdb
/// fall back, e.g. to planting `INT3` itself through memory writes when `Z0` is unsupported); any other
/// error is answered `E05`.
public protocol GDBTarget: AnyObject {
    /// The instruction set, which fixes the register layout and the target description.
    var architecture: GDBArchitecture { get }

    /// Every register, in the description's order (`g`, and the read half of `P`).
    func readRegisters() throws -> GDBRegisterFile

    /// Replaces every register (`G`, and the write half of `P`; `c ADDR` / `s ADDR` set the program counter).
    func writeRegisters(_ registers: GDBRegisterFile) throws

    /// Reads `count` bytes at a guest-virtual address, translated through the guest's current page tables
    /// (CR3) as the CPU would (`m`). `count` is at most the session's packet size.
    ///
    /// - Throws: ``GDBTargetError/memoryFault(address:)`` if any byte is unmapped or outside guest memory.
    ///   The session then retries page by page to return the readable prefix, as gdb expects.
    func readMemory(at address: UInt64, count: Int) throws -> [UInt8]

    /// Writes bytes at a guest-virtual address, translated like ``readMemory(at:count:)`` (`M`, `X`). A
    /// debugger may write pages the guest cannot (read-only code): that is how it plants breakpoints.
    ///
    /// - Throws: ``GDBTargetError/memoryFault(address:)`` if any byte is unmapped.
    func writeMemory(at address: UInt64, bytes: [UInt8]) throws

    /// Inserts a breakpoint or watchpoint (`Z0`-`Z4`). `length` is gdb's `kind`: 1 for an x86 software
    /// breakpoint, the watched byte count for a watchpoint. Inserting one already present must succeed.
    ///
    /// - Throws: ``GDBTargetError/unsupported`` for a kind the target cannot do (gdb then does without),
    ///   ``GDBTargetError/resourceExhausted`` when every debug register is taken.
    func insertBreakpoint(_ kind: GDBBreakpointKind, at address: UInt64, length: Int) throws

    /// Removes a breakpoint or watchpoint (`z0`-`z4`); removing one that is absent must succeed.
    func removeBreakpoint(_ kind: GDBBreakpointKind, at address: UInt64, length: Int) throws

    /// Runs the guest until it stops, and says why (`c`, `s`, `vCont`). Blocks; the session's watcher may
    /// call the interrupt handler meanwhile, and the target must then stop soon with
    /// ``GDBStopReason/signal(_:)`` ``GDBSignal/interrupt``.
    ///
    /// A step runs one instruction and reports ``GDBSignal/trap``. A stop at an inserted software breakpoint
    /// reports ``GDBStopReason/softwareBreakpoint`` with the program counter *at* the breakpoint (the stub
    /// tells gdb it adjusts the PC itself: `swbreak+`). A guest fault the guest cannot handle is a signal
    /// (``GDBSignal/segmentationFault`` for a page fault, ``GDBSignal/illegalInstruction``, ...); the end
    /// of the guest is ``GDBStopReason/exited(status:)`` or ``GDBStopReason/terminated(_:)``.
    ///
    /// - Throws: only when the machine itself failed; the session then ends (``GDBSessionEnd/targetFailed(_:)``)
    ///   after telling gdb the program was killed (`X06`).
    func resume(_ mode: GDBResumeMode) throws -> GDBStopReason

    /// Returns a thread-safe handler that makes a running ``resume(_:)`` stop with
    /// ``GDBSignal/interrupt`` (gdb's Ctrl-C, the `0x03` byte). Called once per session, on the session's
    /// thread.
    ///
    /// The handler may run on the watcher thread at any moment between the start of a resume and shortly
    /// after it returns, so an interrupt can race with another stop; a target may then report the
    /// interrupt at the next resume (a KVM vCPU kicked after `KVM_RUN` returned does exactly that), which
    /// gdb shows as `SIGINT`.
    func makeInterruptHandler() -> @Sendable () -> Void

    /// gdb detaches (`D`): remove every breakpoint, stop single-stepping, and let the guest run on its own.
    func detach()

    /// gdb kills the program (`k`): stop the guest for good.
    func kill()
}

/// What gdb asks to insert with `Z` (the packet's first digit).
public enum GDBBreakpointKind: Int, Hashable, Sendable, CaseIterable {
    /// `Z0`: a software breakpoint (traditionally an `INT3` planted by the stub).
    case software = 0
    /// `Z1`: a hardware execution breakpoint (a debug register).
    case hardware = 1
    /// `Z2`: a write watchpoint.
    case writeWatchpoint = 2
    /// `Z3`: a read watchpoint.
    case readWatchpoint = 3
    /// `Z4`: an access (read or write) watchpoint.
    case accessWatchpoint = 4
}

/// How ``GDBTarget/resume(_:)`` runs the guest.
public enum GDBResumeMode: Hashable, Sendable {
    /// Run until something stops it (`c`, `vCont;c`).
    case `continue`
    /// Run one instruction (`s`, `vCont;s`).
    case step
}

/// A signal number as gdb's remote protocol numbers them (gdb's `enum gdb_signal`, not the host's).
public struct GDBSignal: RawRepresentable, Hashable, Sendable {
    /// The protocol's signal number.
    public var rawValue: UInt8
    /// Makes a signal from its protocol number.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `SIGINT` (2): stopped by an interrupt request (Ctrl-C).
    public static let interrupt = Self(rawValue: 2)
    /// `SIGILL` (4): an invalid opcode (#UD) or an instruction the host cannot emulate.
    public static let illegalInstruction = Self(rawValue: 4)
    /// `SIGTRAP` (5): a breakpoint or a completed step.
    public static let trap = Self(rawValue: 5)
    /// `SIGABRT` (6): the machine failed.
    public static let abort = Self(rawValue: 6)
    /// `SIGFPE` (8): a divide error.
    public static let floatingPointException = Self(rawValue: 8)
    /// `SIGKILL` (9): killed.
    public static let kill = Self(rawValue: 9)
    /// `SIGBUS` (10 in gdb's numbering): a bus error (an access outside guest memory).
    public static let busError = Self(rawValue: 10)
    /// `SIGSEGV` (11): a page fault or general-protection fault.
    public static let segmentationFault = Self(rawValue: 11)
    /// `SIGALRM` (14): a timeout.
    public static let alarm = Self(rawValue: 14)
    /// `SIGTERM` (15): terminated.
    public static let terminate = Self(rawValue: 15)
}

/// Why ``GDBTarget/resume(_:)`` returned: the stop reply the session sends.
public enum GDBStopReason: Hashable, Sendable {
    /// Stopped with a signal: `T<sig>thread:1;` (a step, an interrupt, a fault).
    case signal(GDBSignal)
    /// Stopped at an inserted software breakpoint, PC at its address: `T05swbreak:;thread:1;`.
    case softwareBreakpoint
    /// Stopped at a hardware execution breakpoint: `T05hwbreak:;thread:1;`.
    case hardwareBreakpoint
    /// A watchpoint triggered on the data at `address`: `T05watch:ADDR;` (`rwatch`, `awatch` for reads
    /// and accesses).
    case watchpoint(GDBBreakpointKind, address: UInt64)
    /// The guest ended with an exit status: `W<status>`. Ends the session.
    case exited(status: UInt8)
    /// The guest was ended by a signal: `X<sig>`. Ends the session.
    case terminated(GDBSignal)

    /// Whether the guest is gone after this stop.
    public var endsTarget: Bool {
        switch self {
        case .exited, .terminated: true
        default: false
        }
    }
}

/// Errors a ``GDBTarget`` throws to choose gdb's reply.
public enum GDBTargetError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The target cannot do this at all: the reply is empty, which tells gdb the packet is unsupported.
    case unsupported
    /// A guest-virtual address has no translation, or translates outside guest memory: `E0e` (EFAULT).
    case memoryFault(address: UInt64)
    /// No room for another breakpoint (all four debug registers are in use): `E1c` (ENOSPC).
    case resourceExhausted
    /// An argument the target rejects (a misaligned watchpoint, a register it cannot set): `E16` (EINVAL).
    case invalidArgument(String)

    /// One line for a person.
    public var description: String {
        switch self {
        case .unsupported: "not supported by the target"
        case .memoryFault(let address): "no memory at guest-virtual address 0x\(GDBPacket.hexString(address))"
        case .resourceExhausted: "no free hardware breakpoint slot"
        case .invalidArgument(let reason): "invalid argument: \(reason)"
        }
    }
}
