@preconcurrency import Glibc
public import KVMKit
public import PageTables

/// Why a machine could not be built or its run ended abnormally. Every case describes itself in one line
/// for a person; ``exitStatus`` is what the CLI exits with.
public enum MachineError: Error, Equatable, Sendable, CustomStringConvertible {
    // Configuration (exit status 2)
    case memoryTooSmall(size: UInt64, needed: UInt64)
    case memoryTooLarge(size: UInt64)
    case memoryNotPageMultiple(size: UInt64)
    case memoryUnavailable(size: UInt64, errno: Int32)
    case emptyImage
    case loadAddressOutsideMemory(loadAddress: UInt64, memorySize: UInt64)
    case loadAddressMisaligned(loadAddress: UInt64)
    case imageTooLarge(imageSize: UInt64, loadAddress: UInt64, memorySize: UInt64)
    case imageOverlapsArena(imageEnd: UInt64, arenaBase: UInt64)
    case imageOverlapsLowMemory(loadAddress: UInt64)
    case entryOutsideImage(entry: UInt64)
    case mappingRejected(mapping: Mapping, reason: PageTableError)
    case mappingsOverlap(Mapping, Mapping)
    case tooManyMappings(count: Int, maximum: Int)
    case tooManyProbes(count: Int, maximum: Int)
    case tablesFailed(PageTableError)
    /// The ELF image is for another architecture than the configuration's.
    case imageArchitectureMismatch(image: Architecture, configured: Architecture)
    /// An ELF segment's frames `[base, end)` are not all in guest RAM.
    case segmentOutsideMemory(segment: Int, base: UInt64, end: UInt64, memorySize: UInt64)
    /// An ELF segment's frames (or, `virtual`, its pages) reach below the stack top.
    case segmentOverlapsLowMemory(segment: Int, virtual: Bool, base: UInt64, end: UInt64)
    /// An ELF segment's frames (or, `virtual`, its pages) reach the copy-on-write scratch and arena.
    case segmentOverlapsArena(segment: Int, virtual: Bool, base: UInt64, end: UInt64, scratchBase: UInt64)
    /// The entry point is not inside an executable ELF segment.
    case entryOutsideSegments(entry: UInt64)
    /// ELF segments and extra mappings together are more than the boot-information block can list.
    case tooManyImageRecords(segments: Int, mappings: Int, maximum: Int)
    /// An extra mapping covers virtual pages of an ELF segment.
    case mappingOverlapsSegment(mapping: Mapping, segment: Int)
    /// An extra mapping maps an ELF segment's frames with a permission (`added`) the segment does not have.
    case mappingWidensSegment(mapping: Mapping, segment: Int, permissions: String, added: String)

    // The host's KVM (exit status 3)
    case kvmUnavailable(KVMError)
    case kvmFailed(KVMError)
    case pagingModeUnsupported(architecture: Architecture, detail: String)

    // The guest (exit status 125, or 124 for a timeout)
    case tripleFault(diagnosis: String)
    case unbackedMemoryAccess(address: UInt64, size: Int, write: UInt64?, rip: UInt64)
    case unknownPort(port: UInt16, size: Int, value: UInt32?, rip: UInt64)
    /// `REP OUTS` (`input == false`) or `REP INS` of `count` units of `size` bytes to a port no device serves.
    case unknownPortString(port: UInt16, size: Int, count: Int, input: Bool, rip: UInt64)
    case pageFault(description: String)
    case guestException(description: String)
    case entryFailed(hardwareReason: UInt64, rip: UInt64)
    case internalError(suberror: UInt32, rip: UInt64)
    /// KVM's instruction emulator could not run the instruction at `rip`. `bytes` are the first bytes at
    /// `rip` (as KVM fetched them, or read through the tables in CR3), `nil` when neither is available.
    case emulationFailed(rip: UInt64, bytes: [UInt8]?)
    case unexpectedExit(String, rip: UInt64)
    case badHypercall(String)
    case timeout(seconds: Double, rip: UInt64, exits: Int)
    /// ``Interrupter/interrupt()`` stopped the run.
    case interrupted(rip: UInt64, exits: Int)
    /// The console sink threw: the guest's output could not be delivered.
    case consoleFailed(String)

    /// The process exit status for this error: 2 bad input, 3 KVM, 74 console output lost, 124 timeout,
    /// 125 guest failure, 130 interrupted.
    public var exitStatus: Int32 {
        switch self {
        case .memoryTooSmall, .memoryTooLarge, .memoryNotPageMultiple, .memoryUnavailable, .emptyImage,
            .loadAddressOutsideMemory, .loadAddressMisaligned, .imageTooLarge, .imageOverlapsArena,
            .imageOverlapsLowMemory, .entryOutsideImage, .mappingRejected, .mappingsOverlap, .tooManyMappings,
            .tooManyProbes,
            .tablesFailed, .imageArchitectureMismatch, .segmentOutsideMemory, .segmentOverlapsLowMemory,
            .segmentOverlapsArena, .entryOutsideSegments, .tooManyImageRecords, .mappingOverlapsSegment,
            .mappingWidensSegment:
            2
        case .kvmUnavailable, .kvmFailed, .pagingModeUnsupported: 3
        case .timeout: 124
        case .consoleFailed: 74
        case .interrupted: 130
        case .tripleFault, .unbackedMemoryAccess, .unknownPort, .unknownPortString, .pageFault, .guestException,
            .entryFailed, .internalError, .emulationFailed, .unexpectedExit, .badHypercall:
            125
        }
    }

    public var description: String {
        switch self {
        case .memoryTooSmall(let size, let needed):
            "memory \(byteSize(size)) is too small: this guest and its page tables need at least \(byteSize(needed))"
        case .memoryTooLarge(let size):
            "memory \(byteSize(size)) is too large: at most \(byteSize(Layout.maximumMemorySize)) (guest RAM stays below the 4 GiB device hole)"
        case .memoryNotPageMultiple(let size):
            "memory \(size) bytes is not a multiple of 4 KiB"
        case .memoryUnavailable(let size, let code):
            "cannot allocate \(byteSize(size)) of guest memory: \(errnoText(code))"
        case .emptyImage:
            "the guest image is empty"
        case .loadAddressOutsideMemory(let load, let size):
            "load address \(hex(load)) is outside guest RAM (\(byteSize(size)))"
        case .loadAddressMisaligned(let load):
            "load address \(hex(load)) is not a multiple of 4 KiB"
        case .imageTooLarge(let imageSize, let load, let size):
            "guest image (\(imageSize) bytes at \(hex(load))) does not fit in \(byteSize(size)) of RAM"
        case .imageOverlapsArena(let end, let arena):
            "guest image ends at \(hex(end)), past the copy-on-write scratch and page-table arena at \(hex(arena)): use more --memory"
        case .imageOverlapsLowMemory(let load):
            "load address \(hex(load)) is below \(hex(Layout.stackTop)): it would overwrite the GDT, boot information or stack"
        case .entryOutsideImage(let entry):
            "entry point \(hex(entry)) is outside the loaded image"
        case .mappingRejected(let mapping, let reason):
            "mapping \(mapping) rejected: \(reason)"
        case .mappingsOverlap(let a, let b):
            "mappings overlap: \(a) and \(b)"
        case .tooManyMappings(let count, let maximum):
            "\(count) extra mappings are more than the \(maximum) the boot-information block can list"
        case .tooManyProbes(let count, let maximum):
            "\(count) probes are more than the \(maximum) the probe list holds"
        case .tablesFailed(let reason):
            "building the page tables failed: \(reason)"
        case .imageArchitectureMismatch(let image, let configured):
            "the ELF image is for \(image), but the machine is \(configured)"
        case .segmentOutsideMemory(let segment, let base, let end, let size):
            "ELF segment \(segment) (physical \(hex(base))-\(hex(end &- 1))) is outside guest RAM (\(byteSize(size)))"
        case .segmentOverlapsLowMemory(let segment, let virtual, let base, let end):
            "ELF segment \(segment) (\(virtual ? "virtual" : "physical") \(hex(base))-\(hex(end &- 1))) overlaps low memory below \(hex(Layout.stackTop)) (page 0, GDT, boot information, stack)"
        case .segmentOverlapsArena(let segment, let virtual, let base, let end, let scratch):
            "ELF segment \(segment) (\(virtual ? "virtual" : "physical") \(hex(base))-\(hex(end &- 1))) overlaps the copy-on-write scratch and page-table arena at \(hex(scratch))"
                + (virtual ? "" : ": use more --memory")
        case .entryOutsideSegments(let entry):
            "entry point \(hex(entry)) is not inside an executable ELF segment"
        case .tooManyImageRecords(let segments, let mappings, let maximum):
            "\(segments) ELF segments and \(mappings) extra mappings are more than the \(maximum) the boot-information block can list"
        case .mappingOverlapsSegment(let mapping, let segment):
            "mapping \(mapping) overlaps the virtual pages of ELF segment \(segment)"
        case .mappingWidensSegment(let mapping, let segment, let permissions, let added):
            "mapping \(mapping) would make the frames of ELF segment \(segment) (\(permissions)) \(added)"
        case .kvmUnavailable(let error):
            "\(error); microvm needs KVM: load kvm_intel or kvm_amd (modprobe) and give this user read-write access to /dev/kvm (e.g. the kvm group)"
        case .kvmFailed(let error):
            "\(error)"
        case .pagingModeUnsupported(let arch, let detail):
            "\(arch) guests cannot run on this host's KVM: \(detail)"
        case .tripleFault(let diagnosis):
            "triple fault: \(diagnosis)"
        case .unbackedMemoryAccess(let address, let size, let write, let rip):
            if let write {
                "access to unbacked physical memory: write of \(size) byte\(size == 1 ? "" : "s") (\(hex(write))) to \(hex(address)) at RIP \(hex(rip))"
            } else {
                "access to unbacked physical memory: read of \(size) byte\(size == 1 ? "" : "s") from \(hex(address)) at RIP \(hex(rip))"
            }
        case .unknownPort(let port, let size, let value, let rip):
            if let value {
                "unknown port: out of \(size) byte\(size == 1 ? "" : "s") (\(hex(UInt64(value)))) to port \(hex(UInt64(port))) at RIP \(hex(rip))"
            } else {
                "unknown port: in of \(size) byte\(size == 1 ? "" : "s") from port \(hex(UInt64(port))) at RIP \(hex(rip))"
            }
        case .unknownPortString(let port, let size, let count, let input, let rip):
            input
                ? "unknown port: rep ins of \(count) x \(size) byte\(size == 1 ? "" : "s") from port \(hex(UInt64(port))) at RIP \(hex(rip))"
                : "unknown port: rep outs of \(count) x \(size) byte\(size == 1 ? "" : "s") to port \(hex(UInt64(port))) at RIP \(hex(rip))"
        case .pageFault(let description):
            "page fault: \(description)"
        case .guestException(let description):
            "guest exception: \(description)"
        case .entryFailed(let reason, let rip):
            "entry failed: KVM_EXIT_FAIL_ENTRY, hardware reason \(hex(reason)), RIP \(hex(rip))"
        case .internalError(let suberror, let rip):
            "KVM internal error (suberror \(suberror)) at RIP \(hex(rip))"
        case .emulationFailed(let rip, let bytes):
            "this KVM could not emulate the instruction at RIP \(hex(rip))"
                + (bytes.map { " (bytes \($0.map(hexByte).joined(separator: " ")) ...)" } ?? "")
                + ": KVMs that emulate guest code, as kvm_pvm does, cannot run x87, SSE arithmetic, popcnt or crc32"
        case .unexpectedExit(let exit, let rip):
            "unexpected exit: \(exit) at RIP \(hex(rip))"
        case .badHypercall(let detail):
            "bad hypercall: \(detail)"
        case .timeout(let seconds, let rip, let exits):
            "timeout: the guest was still running after \(formatSeconds(seconds)) (RIP \(hex(rip)), \(exits) exit\(exits == 1 ? "" : "s"))"
        case .interrupted(let rip, let exits):
            "interrupted: the guest was stopped at RIP \(hex(rip)) after \(exits) exit\(exits == 1 ? "" : "s")"
        case .consoleFailed(let detail):
            "cannot deliver the guest's console output: \(detail)"
        }
    }
}

/// `0x` and lowercase hex digits.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// `16 MiB`, `1.5 GiB`, `3073 MiB`, `1424 KiB`, or bytes: always exact, in the largest unit that says the
/// value with at most one decimal.
func byteSize(_ value: UInt64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] where value >= 1 << UInt64(shift) {
        let whole = value >> UInt64(shift)
        let rest = value & ((1 << UInt64(shift)) - 1)
        if rest == 0 { return "\(whole) \(unit)" }
        let (tenths, remainder) = (rest * 10).quotientAndRemainder(dividingBy: 1 << UInt64(shift))
        if remainder == 0 { return "\(whole).\(tenths) \(unit)" }
    }
    return "\(value) bytes"
}

/// Two lowercase hex digits.
func hexByte(_ byte: UInt8) -> String { (byte < 0x10 ? "0" : "") + String(byte, radix: 16) }

func formatSeconds(_ seconds: Double) -> String {
    seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(Int((seconds * 1000).rounded())) ms"
}

func errnoText(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text) + " (errno \(code))"
}
