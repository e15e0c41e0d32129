import Glibc
public import KVMKit
public import PageTables

/// Why a machine could not be built: its configuration, or the host's KVM. Every case describes itself in
/// one line for a person. What the guest does once it runs is a ``RunError``.
public enum MachineError: Error, Equatable, Sendable, CustomStringConvertible {
    // The configuration
    /// RAM cannot hold the image, the fixed low pages, the copy-on-write scratch frames and the page-table
    /// arena: `needed` bytes would.
    case memoryTooSmall(size: UInt64, needed: UInt64)
    /// RAM above ``Layout/maximumMemorySize``.
    case memoryTooLarge(size: UInt64)
    /// A RAM size that is not a multiple of 4 KiB.
    case memoryNotPageMultiple(size: UInt64)
    /// `mmap` could not allocate guest RAM (or map a file or snapshot image as RAM).
    case memoryUnavailable(size: UInt64, errno: Int32)
    /// An image of zero bytes.
    case emptyImage
    /// The load address is not inside RAM.
    case loadAddressOutsideMemory(loadAddress: UInt64, memorySize: UInt64)
    /// The load address is not a multiple of 4 KiB.
    case loadAddressMisaligned(loadAddress: UInt64)
    /// The image, at the load address, runs past the end of RAM.
    case imageTooLarge(imageSize: UInt64, loadAddress: UInt64, memorySize: UInt64)
    /// The image runs into the copy-on-write scratch frames and the page-table arena at the top of RAM.
    case imageOverlapsArena(imageEnd: UInt64, arenaBase: UInt64)
    /// The load address is below ``Layout/stackTop``, where the GDT, the boot information and the stack are.
    case imageOverlapsLowMemory(loadAddress: UInt64)
    /// The entry point is not inside the loaded image.
    case entryOutsideImage(entry: UInt64)
    /// The engine refused one of the extra mappings (misaligned, outside the virtual space, ...).
    case mappingRejected(mapping: Mapping, reason: PageTableError)
    /// Two extra mappings cover the same virtual addresses.
    case mappingsOverlap(Mapping, Mapping)
    /// More extra mappings than the boot-information block can list.
    case tooManyMappings(count: Int, maximum: Int)
    /// More probes than the probe list holds.
    case tooManyProbes(count: Int, maximum: Int)
    /// The engine could not build the boot page tables.
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

    // The host's KVM
    /// The KVM device cannot be opened, or is not KVM.
    case kvmUnavailable(KVMError)
    /// A KVM call failed while the VM or its vCPU was set up.
    case kvmFailed(KVMError)
    /// This KVM cannot run the guest's paging mode: it dropped CR0.PG when the special registers were set
    /// (as kvm_pvm does for 32-bit paging), so an i686 guest would fault at its first instruction.
    case pagingModeUnsupported(architecture: Architecture, detail: String)

    /// One line for a person, naming what went wrong and the values involved.
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
    guard let text = unsafe strerror(code) else { return "errno \(code)" }
    return unsafe String(cString: text) + " (errno \(code))"
}
