internal import CKVM

/// One CPUID leaf as KVM reports and accepts it: the inputs (`function`, `index`) and the four outputs.
///
/// The kernel type is `struct kvm_cpuid_entry2`.
public struct CPUIDEntry: Hashable, Sendable {
    /// The leaf: the value of EAX when the guest executes CPUID.
    public var function: UInt32
    /// The sub-leaf: the value of ECX, significant only when `flags` has
    /// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` (bit 0).
    public var index: UInt32
    /// `KVM_CPUID_FLAG_*` bits.
    public var flags: UInt32
    /// The EAX output.
    public var eax: UInt32
    /// The EBX output.
    public var ebx: UInt32
    /// The ECX output.
    public var ecx: UInt32
    /// The EDX output.
    public var edx: UInt32

    /// Makes an entry from its fields.
    public init(
        function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
        eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0
    ) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }
}

/// Looking up a CPUID table (what `KVM_GET_SUPPORTED_CPUID` returns) and the paging features it reports.
extension Array where Element == CPUIDEntry {
    /// The entry the guest would see for `CPUID` with EAX = `function` and ECX = `index`, if present.
    ///
    /// The sub-leaf only has to match for entries whose `flags` mark the index significant
    /// (`KVM_CPUID_FLAG_SIGNIFCANT_INDEX`, bit 0), as KVM itself matches them.
    public func entry(function: UInt32, index: UInt32 = 0) -> CPUIDEntry? {
        first { $0.function == function && ($0.flags & 1 == 0 || $0.index == index) }
    }

    /// Whether 1 GiB pages may be used: CPUID.80000001H:EDX.Page1GB (bit 26).
    public var supportsPage1GB: Bool { bit(26, ofEDXIn: 0x8000_0001) }

    /// Whether 4 MiB pages may be used in 32-bit paging: CPUID.01H:EDX.PSE (bit 3).
    public var supportsPSE: Bool { bit(3, ofEDXIn: 0x1) }

    /// Whether the execute-disable bit may be used (EFER.NXE): CPUID.80000001H:EDX.NX (bit 20).
    public var supportsNX: Bool { bit(20, ofEDXIn: 0x8000_0001) }

    private func bit(_ bit: UInt32, ofEDXIn function: UInt32) -> Bool {
        guard let leaf = entry(function: function) else { return false }
        return leaf.edx & (1 << bit) != 0
    }
}

extension CPUIDEntry {
    init(_ kernel: kvm_cpuid_entry2) {
        self.init(
            function: kernel.function, index: kernel.index, flags: kernel.flags,
            eax: kernel.eax, ebx: kernel.ebx, ecx: kernel.ecx, edx: kernel.edx)
    }

    var kernelValue: kvm_cpuid_entry2 {
        var kernel = kvm_cpuid_entry2()
        kernel.function = function
        kernel.index = index
        kernel.flags = flags
        kernel.eax = eax
        kernel.ebx = ebx
        kernel.ecx = ecx
        kernel.edx = edx
        return kernel
    }

    /// Allocates a zeroed `kvm_cpuid2` with room for `capacity` entries, presents `entries` in it, runs
    /// `body` on the header, and returns the entries the kernel left in it (`nent` of them).
    ///
    /// `kvm_cpuid2` ends in a flexible array member, which Swift does not import, so the buffer is raw
    /// memory of header size plus `capacity` strides, and the entries are reached via `ckvm_cpuid2_entries`.
    static func withKernelBuffer(
        capacity: Int, presenting entries: [CPUIDEntry] = [],
        _ body: (UnsafeMutableRawPointer) throws(KVMError) -> Void
    ) throws(KVMError) -> [CPUIDEntry] {
        precondition(entries.count <= capacity && capacity <= Int(UInt32.max))
        let byteCount = MemoryLayout<kvm_cpuid2>.size + capacity * MemoryLayout<kvm_cpuid_entry2>.stride
        let alignment = Swift.max(MemoryLayout<kvm_cpuid2>.alignment, MemoryLayout<kvm_cpuid_entry2>.alignment)
        // SAFETY: a fresh allocation of `byteCount` bytes, freed on every exit path by the `defer`; it is
        // zeroed before any typed access so the padding the kernel checks is 0.
        let raw = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: alignment)
        defer { unsafe raw.deallocate() }
        unsafe raw.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        // SAFETY: the buffer is large and aligned enough for the header; binding zeroed bytes to a
        // trivial C struct is valid.
        let header = unsafe raw.bindMemory(to: kvm_cpuid2.self, capacity: 1)
        unsafe header.pointee.nent = UInt32(capacity)
        // SAFETY: the entries start inside the buffer (the header's flexible array) and `capacity` of them
        // fit, by the byte count above; they are trivial C structs over zeroed memory.
        let slots = unsafe ckvm_cpuid2_entries(header)!
        for (offset, entry) in entries.enumerated() {
            unsafe slots[offset] = entry.kernelValue
        }
        if !entries.isEmpty { unsafe header.pointee.nent = UInt32(entries.count) }
        unsafe try body(raw)
        let count = unsafe Int(header.pointee.nent)
        precondition(count <= capacity, "kernel reported more CPUID entries than the buffer holds")
        // SAFETY: the kernel wrote `count` <= `capacity` entries into the buffer, all still allocated.
        return (0..<count).map { unsafe CPUIDEntry(slots[$0]) }
    }
}
