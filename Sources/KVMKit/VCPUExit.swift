internal import CKVM

/// Why one ``VCPU/run()`` returned: one case per `KVM_EXIT_*` that microvm handles, with the exit's data
/// copied out of `kvm_run` (no pointers into it survive the call).
public enum VCPUExit: Equatable, Sendable, CustomStringConvertible {
    /// The guest executed `OUT` of `size` (1, 2 or 4) bytes to `port`; `value` holds them, little-endian,
    /// zero-extended. `KVM_EXIT_IO` with direction `KVM_EXIT_IO_OUT` and a count of 1.
    case ioOut(port: UInt16, size: Int, value: UInt32)

    /// The guest executed `REP OUTS`: `bytes` holds all `count × size` bytes in order. `KVM_EXIT_IO` with
    /// direction `KVM_EXIT_IO_OUT` and a count above 1.
    case ioOutString(port: UInt16, size: Int, bytes: [UInt8])

    /// The guest executed `IN` of `size` bytes from `port`; answer with ``VCPU/completeIORead(_:)`` before
    /// running again. `KVM_EXIT_IO` with direction `KVM_EXIT_IO_IN` and a count of 1.
    case ioIn(port: UInt16, size: Int)

    /// The guest executed `REP INS`: `count` reads of `size` bytes from `port`, which the host answers by
    /// filling the exit's data area with ``VCPU/completeIOReadString(_:)``. `KVM_EXIT_IO` with direction
    /// `KVM_EXIT_IO_IN` and a count above 1.
    case ioInString(port: UInt16, size: Int, count: Int)

    /// The guest accessed `size` bytes at a guest-physical `address` that no memory slot backs (or wrote
    /// a read-only slot). `writeValue` is the stored value for a write, `nil` for a read, which is answered
    /// with ``VCPU/completeMMIORead(_:)``. `KVM_EXIT_MMIO`.
    case mmio(address: UInt64, size: Int, writeValue: UInt64?)

    /// The guest executed `HLT` (with no interrupt to wake it). `KVM_EXIT_HLT`.
    case halt

    /// The guest shut down, normally a triple fault. `KVM_EXIT_SHUTDOWN`.
    case shutdown

    /// The hardware refused to enter the guest (invalid guest state); `hardwareReason` is the
    /// vendor-specific code. `KVM_EXIT_FAIL_ENTRY`.
    case failedEntry(hardwareReason: UInt64)

    /// KVM's instruction emulator could not execute the guest's next instruction. KVMs that emulate
    /// guest code (`kvm_pvm` emulates every instruction) cannot do x87, most SSE, `popcnt` or `crc32`.
    /// `instructionBytes` are the bytes KVM fetched at RIP, when it reports them
    /// (`KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES`), else `nil`. `KVM_EXIT_INTERNAL_ERROR` with
    /// suberror `KVM_INTERNAL_ERROR_EMULATION`.
    case emulationFailure(instructionBytes: [UInt8]?)

    /// KVM could not handle an exit for another reason (`suberror` is a `KVM_INTERNAL_ERROR_*` value:
    /// 2 a nested exception, 3 an event it could not deliver, 4 an exit reason it did not expect).
    /// `KVM_EXIT_INTERNAL_ERROR`.
    case internalError(suberror: UInt32)

    /// The guest requested a system event (`type` is a `KVM_SYSTEM_EVENT_*` value: 1 shutdown, 2 reset,
    /// 3 crash). `KVM_EXIT_SYSTEM_EVENT`.
    case systemEvent(type: UInt32)

    /// A guest-debug stop (single step, software or hardware breakpoint; see ``GuestDebug``), with the
    /// exception, address and debug registers. `KVM_EXIT_DEBUG`.
    case debug(DebugExit)

    /// The vCPU's dirty ring is (nearly) full: harvest it (``VirtualMachine/harvestDirtyRing(of:_:)``)
    /// before running again. `KVM_EXIT_DIRTY_RING_FULL`.
    case dirtyRingFull

    /// `KVM_RUN` was interrupted (EINTR, `KVM_EXIT_INTR`): a signal such as a ``VCPUKicker``'s arrived or
    /// ``VCPU/immediateExit`` was set. The guest state is intact; running again resumes it.
    case interrupted

    /// Any other exit; `reason` is the raw `KVM_EXIT_*` number.
    case unsupported(reason: UInt32)

    /// One short line, as printed by `--trace`: `io out port 0x3f8 size 1 value 0x68`.
    public var description: String {
        switch self {
        case .ioOut(let port, let size, let value):
            "io out port \(hex(port)) size \(size) value \(hex(value))"
        case .ioOutString(let port, let size, let bytes):
            "io out string port \(hex(port)) size \(size) count \(bytes.count / Swift.max(size, 1))"
        case .ioIn(let port, let size):
            "io in port \(hex(port)) size \(size)"
        case .ioInString(let port, let size, let count):
            "io in string port \(hex(port)) size \(size) count \(count)"
        case .mmio(let address, let size, nil):
            "mmio read address \(hex(address)) size \(size)"
        case .mmio(let address, let size, let value?):
            "mmio write address \(hex(address)) size \(size) value \(hex(value))"
        case .halt:
            "hlt"
        case .shutdown:
            "shutdown (triple fault)"
        case .failedEntry(let reason):
            "failed entry, hardware reason \(hex(reason))"
        case .emulationFailure(let bytes?):
            "emulation failure, instruction bytes \(bytes.map { byte in hexByte(byte) }.joined(separator: " "))"
        case .emulationFailure(nil):
            "emulation failure"
        case .internalError(let suberror):
            "internal error, suberror \(suberror)"
        case .systemEvent(let type):
            "system event type \(type)"
        case .debug(let stop):
            "debug exception \(stop.exception) pc \(hex(stop.pc)) dr6 \(hex(stop.dr6))"
        case .dirtyRingFull:
            "dirty ring full"
        case .interrupted:
            "interrupted"
        case .unsupported(let reason):
            "unsupported exit reason \(reason)"
        }
    }
}

private func hex<T: BinaryInteger>(_ value: T) -> String {
    "0x" + String(value, radix: 16)
}

/// Two lowercase hex digits.
private func hexByte(_ byte: UInt8) -> String {
    (byte < 0x10 ? "0" : "") + String(byte, radix: 16)
}

extension VCPUExit {
    /// Decodes the exit the kernel just described in the `kvm_run` mapping at `base`.
    ///
    /// This is the only reader of `kvm_run`'s exit fields. Data areas (`io.data_offset`) are checked to
    /// lie inside the `mappingSize`-byte mapping; a kernel that broke that would be a bug, so it traps.
    init(decoding base: UnsafeRawPointer, mappingSize: Int) {
        precondition(mappingSize >= MemoryLayout<kvm_run>.size)
        // SAFETY: the caller passes the start of a live kvm_run mapping of `mappingSize` bytes that the
        // kernel is not writing (KVM_RUN has returned); it is bound to kvm_run since the vCPU was made.
        let run = unsafe base.assumingMemoryBound(to: kvm_run.self)
        let reason = unsafe run.pointee.exit_reason
        switch Int32(bitPattern: reason) {
        case KVM_EXIT_IO:
            let io = unsafe run.pointee.io
            let size = Int(io.size)
            let count = Int(io.count)
            let offset = Int(io.data_offset)
            precondition(
                [1, 2, 4].contains(size) && count >= 1 && offset >= 0
                    && offset <= mappingSize && count * size <= mappingSize - offset,
                "KVM_EXIT_IO data outside the kvm_run mapping")
            // SAFETY: the `count * size` bytes at `offset` lie inside the mapping (checked above).
            let data = unsafe UnsafeRawBufferPointer(start: base.advanced(by: offset), count: count * size)
            switch (Int32(io.direction), count) {
            case (KVM_EXIT_IO_OUT, 1):
                self = unsafe .ioOut(port: io.port, size: size, value: UInt32(truncatingIfNeeded: littleEndian(data)))
            case (KVM_EXIT_IO_OUT, _):
                self = unsafe .ioOutString(port: io.port, size: size, bytes: Array(data))
            case (KVM_EXIT_IO_IN, 1):
                self = .ioIn(port: io.port, size: size)
            case (KVM_EXIT_IO_IN, _):
                self = .ioInString(port: io.port, size: size, count: count)
            default:
                self = .unsupported(reason: reason)
            }
        case KVM_EXIT_MMIO:
            let mmio = unsafe run.pointee.mmio
            let size = Swift.min(Int(mmio.len), 8)
            var value: UInt64? = nil
            if mmio.is_write != 0 {
                // SAFETY: `data` is an 8-byte tuple inside a local copy; `size` <= 8 bytes are read.
                value = unsafe withUnsafeBytes(of: mmio.data) {
                    unsafe littleEndian(UnsafeRawBufferPointer(rebasing: $0[0..<size]))
                }
            }
            self = .mmio(address: mmio.phys_addr, size: size, writeValue: value)
        case KVM_EXIT_HLT:
            self = .halt
        case KVM_EXIT_SHUTDOWN:
            self = .shutdown
        case KVM_EXIT_FAIL_ENTRY:
            self = unsafe .failedEntry(hardwareReason: run.pointee.fail_entry.hardware_entry_failure_reason)
        case KVM_EXIT_INTERNAL_ERROR where unsafe run.pointee.internal.suberror == UInt32(KVM_INTERNAL_ERROR_EMULATION):
            let failure = unsafe run.pointee.emulation_failure
            // `ndata` counts the 64-bit words after it: `flags`, then the size byte and 15 instruction
            // bytes (two words), present only when `flags` says so.
            if failure.ndata >= 3, failure.flags & UInt64(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0 {
                let size = Swift.min(Int(failure.insn_size), 15)
                // SAFETY: `insn_bytes` is a 15-byte tuple inside a local copy; at most 15 bytes are read.
                self = unsafe .emulationFailure(
                    instructionBytes: withUnsafeBytes(of: failure.insn_bytes) { unsafe Array($0.prefix(size)) })
            } else {
                self = .emulationFailure(instructionBytes: nil)
            }
        case KVM_EXIT_INTERNAL_ERROR:
            self = unsafe .internalError(suberror: run.pointee.internal.suberror)
        case KVM_EXIT_SYSTEM_EVENT:
            self = unsafe .systemEvent(type: run.pointee.system_event.type)
        case KVM_EXIT_DEBUG:
            let arch = unsafe run.pointee.debug.arch
            self = .debug(DebugExit(exception: arch.exception, pc: arch.pc, dr6: arch.dr6, dr7: arch.dr7))
        case KVM_EXIT_DIRTY_RING_FULL:
            self = .dirtyRingFull
        case KVM_EXIT_INTR:
            self = .interrupted
        default:
            self = .unsupported(reason: reason)
        }
    }
}

/// The little-endian unsigned integer in `bytes` (at most 8 of them).
private func littleEndian(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    var value: UInt64 = 0
    for unsafe(index, byte) in unsafe bytes.enumerated() {
        value |= UInt64(byte) << (8 * UInt64(index))
    }
    return value
}
