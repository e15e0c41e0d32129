public import KVMKit
public import PageTables

/// What the engine says about one virtual address in the tables the vCPU was using.
public enum AddressTranslation: Equatable, Sendable, CustomStringConvertible {
    /// A present leaf maps it; `translation.length` runs to the end of the leaf.
    case mapped(PageTables.Translation)
    /// No present leaf maps it.
    case notMapped
    /// Not a canonical amd64 address.
    case nonCanonical
    /// The walk met an entry it cannot follow (tables a guest rewrote).
    case unreadable(PageTableError)

    /// `(-> 0x201000, read-only, 4 KiB leaf)`, `(not mapped)`, `(non-canonical address)`,
    /// `(tables unreadable: ...)`.
    public var description: String {
        switch self {
        case .mapped(let t):
            let cow = { if case .copyOnWrite = t.kind { return ", copy-on-write" } else { return "" } }()
            return
                "(-> \(hex(t.physicalAddress)), \(t.kind.isWritable ? "writable" : "read-only")\(t.kind.isExecutable ? "" : ", no-execute")\(cow), \(t.leafSize) leaf)"
        case .notMapped: return "(not mapped)"
        case .nonCanonical: return "(non-canonical address)"
        case .unreadable(let error): return "(tables unreadable: \(error))"
        }
    }

    /// The translation of `virtualAddress` in `space`.
    init(of virtualAddress: UInt64, in space: any AddressSpace) {
        do {
            guard let translation = try space.lookup(virtualAddress) else {
                self = .notMapped
                return
            }
            self = .mapped(translation)
        } catch .outsideVirtualSpace {
            self = .nonCanonical
        } catch {
            self = .unreadable(error)
        }
    }
}

/// What the guest did that ended its run, as data: where it was, what it touched, and how the tables in
/// CR3 translated those addresses. ``description`` is the one line a person reads.
public struct GuestFault: Error, Equatable, Sendable, CustomStringConvertible {
    /// The kind of fault, with what only that kind carries.
    public enum Kind: Equatable, Sendable {
        /// The processor shut down (`KVM_EXIT_SHUTDOWN`): an exception while delivering a double fault.
        case tripleFault
        /// An exception the guest's own handler reported as fatal (hypercall 2): vector and error code.
        case exception(vector: UInt64, errorCode: UInt64)
        /// An access to guest-physical memory that no memory slot and no device backs (`KVM_EXIT_MMIO`).
        case unbackedMemory(address: UInt64, size: Int, writeValue: UInt64?)
        /// Port I/O no device serves: `count` units of `size` bytes (`count` > 1 for `rep outs` / `rep ins`);
        /// `writeValue` is the first unit written, `nil` for input.
        case unknownPort(port: UInt16, size: Int, writeValue: UInt32?, count: Int)
        /// KVM's instruction emulator could not run the instruction at RIP; `bytes` are the first bytes there.
        case emulationFailure(bytes: [UInt8]?)
        /// The processor refused to enter the guest (`KVM_EXIT_FAIL_ENTRY`).
        case entryFailed(hardwareReason: UInt64)
        /// KVM could not handle an exit (`KVM_EXIT_INTERNAL_ERROR` other than emulation).
        case internalError(suberror: UInt32)
        /// An exit microvm does not serve (a system event, a debug exit without a debugger, ...).
        case unexpectedExit(VCPUExit)
        /// A hypercall record the host refused: misplaced, malformed or over a limit.
        case badHypercall(String)
    }

    /// What happened.
    public var kind: Kind
    /// Where: the instruction pointer the fault names (the faulting instruction, or the one after an I/O
    /// exit).
    public var rip: UInt64
    /// CR2, the last page-fault address, where it matters (triple faults and reported page faults).
    public var cr2: UInt64?
    /// CR3, the root of the tables the vCPU was using.
    public var cr3: UInt64?
    /// The engine's translation of ``rip`` through the tables in CR3, where it was worked out.
    public var ripTranslation: AddressTranslation?
    /// The engine's translation of ``cr2``, where it was worked out.
    public var cr2Translation: AddressTranslation?
    /// The root of the tables the host built, when CR3 held another one (the guest loaded its own).
    public var hostRoot: UInt64?

    /// A fault of `kind` at `rip`, with what is known of the processor's state then. Devices usually call
    /// ``Machine/fault(_:rip:)`` instead, which fills in RIP and CR3.
    ///
    /// - Parameters:
    ///   - kind: what happened.
    ///   - rip: the instruction pointer the fault names.
    ///   - cr2: CR2, where it matters.
    ///   - cr3: the root of the tables the vCPU was using.
    ///   - ripTranslation: how those tables translate `rip`.
    ///   - cr2Translation: how those tables translate `cr2`.
    ///   - hostRoot: the root of the host's tables, when CR3 held another.
    public init(
        _ kind: Kind, rip: UInt64, cr2: UInt64? = nil, cr3: UInt64? = nil, ripTranslation: AddressTranslation? = nil,
        cr2Translation: AddressTranslation? = nil, hostRoot: UInt64? = nil
    ) {
        self.kind = kind
        self.rip = rip
        self.cr2 = cr2
        self.cr3 = cr3
        self.ripTranslation = ripTranslation
        self.cr2Translation = cr2Translation
        self.hostRoot = hostRoot
    }

    /// Exception names by vector (Intel SDM Vol. 3A Table 6-1), for the ones guests meet.
    static let exceptionNames: [UInt64: String] = [
        0: "divide error (#DE)", 3: "breakpoint (#BP)", 6: "invalid opcode (#UD)", 8: "double fault (#DF)",
        13: "general protection (#GP)", 17: "alignment check (#AC)",
    ]

    /// One line: `triple fault: RIP 0x... (-> ...), CR2 0x... (not mapped), CR3 0x... (hint)`,
    /// `page fault: write to 0x40001000 (-> 0x201000, read-only, 4 KiB leaf) at RIP 0x100042`, ...
    public var description: String {
        switch kind {
        case .tripleFault:
            var text = "triple fault: RIP \(hex(rip))"
            if let ripTranslation { text += " \(ripTranslation)" }
            if let cr2 {
                text += ", CR2 \(hex(cr2))"
                if let cr2Translation { text += " \(cr2Translation)" }
            }
            if let cr3 { text += ", CR3 \(hex(cr3))" }
            if let hostRoot { text += " (the guest's own tables: the host's are at \(hex(hostRoot)))" }
            if let cr2, cr2 < 0x1000 && cr2 != 0 || cr2 == 0 && rip < 0x1000 {
                text += " (page 0 is never mapped: a null pointer?)"
            } else if case .mapped(let t)? = cr2Translation, case .copyOnWrite = t.kind {
                text +=
                    " (CR2 is a copy-on-write page: a write to it needs the guest's #PF handler to ask the host to resolve it)"
            }
            return text
        case .exception(14, let errorCode):
            return "page fault: "
                + Self.pageFaultLine(
                    errorCode: errorCode, address: cr2 ?? 0, rip: rip, translation: cr2Translation?.description ?? "")
        case .exception(let vector, let errorCode):
            return
                "guest exception: \(Self.exceptionNames[vector] ?? "vector \(vector)"), error code \(hex(errorCode)) at RIP \(hex(rip))"
        case .unbackedMemory(let address, let size, let write):
            let bytes = "\(size) byte\(size == 1 ? "" : "s")"
            if let write {
                return
                    "access to unbacked physical memory: write of \(bytes) (\(hex(write))) to \(hex(address)) at RIP \(hex(rip))"
            }
            return "access to unbacked physical memory: read of \(bytes) from \(hex(address)) at RIP \(hex(rip))"
        case .unknownPort(let port, let size, let value, let count):
            let bytes = "\(size) byte\(size == 1 ? "" : "s")"
            switch (value, count) {
            case (let value?, 1):
                return "unknown port: out of \(bytes) (\(hex(UInt64(value)))) to port \(hex(UInt64(port))) at RIP \(hex(rip))"
            case (nil, 1):
                return "unknown port: in of \(bytes) from port \(hex(UInt64(port))) at RIP \(hex(rip))"
            case (_?, _):
                return "unknown port: rep outs of \(count) x \(bytes) to port \(hex(UInt64(port))) at RIP \(hex(rip))"
            case (nil, _):
                return "unknown port: rep ins of \(count) x \(bytes) from port \(hex(UInt64(port))) at RIP \(hex(rip))"
            }
        case .emulationFailure(let bytes):
            return "this KVM could not emulate the instruction at RIP \(hex(rip))"
                + (bytes.map { " (bytes \($0.map(hexByte).joined(separator: " ")) ...)" } ?? "")
                + ": KVMs that emulate guest code, as kvm_pvm does, cannot run x87, SSE arithmetic, popcnt or crc32"
        case .entryFailed(let reason):
            return "entry failed: KVM_EXIT_FAIL_ENTRY, hardware reason \(hex(reason)), RIP \(hex(rip))"
        case .internalError(let suberror):
            return "KVM internal error (suberror \(suberror)) at RIP \(hex(rip))"
        case .unexpectedExit(let exit):
            return "unexpected exit: \(exit) at RIP \(hex(rip))"
        case .badHypercall(let detail):
            return "bad hypercall: \(detail)"
        }
    }

    /// `write to 0x40001000 (-> 0x201000, read-only, 4 KiB leaf) at RIP 0x100042`, from the #PF error code
    /// (Intel SDM Vol. 3A §4.7: P bit 0, W/R bit 1, U/S bit 2, I/D bit 4).
    public static func pageFaultLine(errorCode: UInt64, address: UInt64, rip: UInt64, translation: String) -> String {
        let access =
            errorCode & 0x10 != 0 ? "instruction fetch from" : errorCode & 0x2 != 0 ? "write to" : "read of"
        let mode = errorCode & 0x4 != 0 ? "user " : ""
        return "\(mode)\(access) \(hex(address)) \(translation) at RIP \(hex(rip))"
    }
}

/// Why ``Machine/run()`` did not return a ``RunOutcome``.
public enum RunError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The guest faulted (see ``GuestFault``).
    case fault(GuestFault)
    /// The guest was still running when the timeout passed.
    case timeout(seconds: Double, rip: UInt64, exits: Int)
    /// ``Interrupter/interrupt()`` stopped the run.
    case interrupted(rip: UInt64, exits: Int)
    /// The console sink threw: the guest's output could not be delivered.
    case consoleFailed(String)
    /// A device the embedder attached threw an error that is not a ``GuestFault``.
    case deviceFailed(String)
    /// A KVM call failed underneath the run.
    case kvmFailed(KVMError)
    /// The machine faulted (or was interrupted mid-call) earlier and has not been reset since: its state is
    /// not one a run or a call can start from.
    case needsReset(after: String)
    /// The guest wrote more pages between two exits than the dirty ring could record: the run stops, and
    /// the next reset restores all of memory in a new VM.
    case dirtyTrackingLost

    /// One line for a person, naming what went wrong and the values involved.
    public var description: String {
        switch self {
        case .fault(let fault): fault.description
        case .timeout(let seconds, let rip, let exits):
            "timeout: the guest was still running after \(formatSeconds(seconds)) (RIP \(hex(rip)), \(exits) exit\(exits == 1 ? "" : "s"))"
        case .interrupted(let rip, let exits):
            "interrupted: the guest was stopped at RIP \(hex(rip)) after \(exits) exit\(exits == 1 ? "" : "s")"
        case .consoleFailed(let detail): "cannot deliver the guest's console output: \(detail)"
        case .deviceFailed(let detail): "device failed: \(detail)"
        case .kvmFailed(let error): "\(error)"
        case .needsReset(let cause):
            "the machine must be reset before it runs again: its last run ended with \(cause)"
        case .dirtyTrackingLost:
            "the guest wrote faster than KVM's dirty ring could record between two exits: the machine must be reset (which rebuilds its VM)"
        }
    }
}
