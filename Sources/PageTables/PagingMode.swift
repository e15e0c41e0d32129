/// The processor architecture a guest runs in, chosen at run time.
///
/// Each case has a ``PagingMode`` type that the engine is specialised for at compile time; code that picks
/// the architecture at run time switches once, at the top, and calls generic code from there.
public enum Architecture: String, Sendable, CaseIterable, CustomStringConvertible {
    /// x86-64 long mode with 4-level paging: 48-bit canonical virtual addresses, 52-bit physical addresses.
    case amd64
    /// IA-32 protected mode with 2-level 32-bit paging (no PAE): 32-bit virtual and physical addresses.
    case i686

    /// `amd64` or `i686`, as the command line spells it.
    public var description: String { rawValue }
}

/// The shape of one x86 paging mode: how many levels, how a virtual address splits into indices,
/// how wide an entry is and which leaf sizes each level can hold.
///
/// Levels are numbered from the leaves up: level 0 holds 4 KiB leaves (a page table), the highest
/// level is the root (PML4 on amd64, the page directory on i686). Conformers are caseless enums whose
/// members are compile-time constants, so a `PageTable` specialised for a mode has no dynamic dispatch.
public protocol PagingMode: Sendable {
    /// The architecture this mode belongs to.
    static var architecture: Architecture { get }
    /// Number of table levels (4 on amd64, 2 on i686).
    static var levelCount: Int { get }
    /// Bits of virtual address consumed per level (9 on amd64, 10 on i686).
    static var indexBits: Int { get }
    /// Bytes per entry (8 on amd64, 4 on i686).
    static var entryByteCount: Int { get }
    /// Width of the linear virtual address space (48 on amd64, 32 on i686).
    static var virtualAddressBits: Int { get }
    /// Width of the physical address space the entries can name (52 on amd64, 32 on i686).
    static var physicalAddressBits: Int { get }
    /// The bits of a non-leaf entry (or 4 KiB leaf) that hold the physical address.
    static var frameAddressMask: UInt64 { get }
    /// The execute-disable bit, or 0 where the mode has none (i686 without PAE).
    static var executeDisableBit: UInt64 { get }
    /// The large leaf a level can hold, if any: `nil` for level 0 (always 4 KiB) and for the root on amd64.
    /// - Parameter level: a table level, 0 for a page table.
    static func largeLeaf(atLevel level: Int) -> LeafSize?
}

extension PagingMode {
    /// Entries per table: 512 on amd64, 1,024 on i686 (every table is one 4 KiB page).
    @inlinable @inline(__always)
    public static var entriesPerTable: Int { 1 << indexBits }

    /// The bit position where the index of `level` starts in a virtual address.
    /// - Parameter level: a table level, 0 for a page table.
    @inlinable @inline(__always)
    public static func shift(ofLevel level: Int) -> Int { 12 &+ indexBits &* level }

    /// One past the highest linear virtual address: 2^48 on amd64, 2^32 on i686.
    @inlinable @inline(__always)
    public static var virtualSpaceSize: UInt64 { 1 << UInt64(virtualAddressBits) }

    /// One past the highest physical address an entry can name.
    @inlinable @inline(__always)
    public static var physicalSpaceSize: UInt64 { 1 << UInt64(physicalAddressBits) }

    /// The bits of a large leaf that hold its frame address (bit 12 is the PAT bit there, not address).
    @inlinable @inline(__always)
    static func largeFrameMask(_ size: LeafSize) -> UInt64 {
        frameAddressMask & ~(size.byteCount &- 1)
    }

    /// Converts a virtual address as software writes it to the linear index space the tables cover.
    ///
    /// On amd64 this strips the sign extension of bit 47; callers check canonicality first.
    @inlinable @inline(__always)
    static func linear(_ virtualAddress: UInt64) -> UInt64 {
        virtualAddress & (virtualSpaceSize &- 1)
    }

    /// Converts a linear address back to the form software uses (amd64: sign-extended from bit 47).
    /// - Parameter linearAddress: an address below ``virtualSpaceSize``.
    @inlinable @inline(__always)
    public static func canonical(_ linearAddress: UInt64) -> UInt64 {
        guard virtualAddressBits == 48 else { return linearAddress }
        let high: UInt64 = 0xFFFF_0000_0000_0000
        return linearAddress & (1 << 47) != 0 ? linearAddress | high : linearAddress
    }
}

/// amd64 4-level paging (Intel SDM Vol. 3A §4.5): PML4, PDPT, PD, PT; 8-byte entries; NX at bit 63.
public enum AMD64: PagingMode {
    /// ``Architecture/amd64``.
    @inlinable public static var architecture: Architecture { .amd64 }
    /// 4: PML4, PDPT, page directory, page table.
    @inlinable public static var levelCount: Int { 4 }
    /// 9: 512 entries per table.
    @inlinable public static var indexBits: Int { 9 }
    /// 8 bytes per entry.
    @inlinable public static var entryByteCount: Int { 8 }
    /// 48: linear addresses below 2^48, used sign-extended from bit 47.
    @inlinable public static var virtualAddressBits: Int { 48 }
    /// 52: the widest physical address 4-level paging can express (MAXPHYADDR).
    @inlinable public static var physicalAddressBits: Int { 52 }
    /// Bits 51:12 (SDM Vol. 3A Table 4-15 to 4-20: "Physical address of ...").
    @inlinable public static var frameAddressMask: UInt64 { 0x000F_FFFF_FFFF_F000 }
    /// XD, bit 63 (with IA32_EFER.NXE set).
    @inlinable public static var executeDisableBit: UInt64 { EntryBits.executeDisable }
    /// 2 MiB in a page directory (level 1), 1 GiB in a PDPT (level 2); none elsewhere.
    /// - Parameter level: a table level, 0 for a page table.
    @inlinable public static func largeLeaf(atLevel level: Int) -> LeafSize? {
        switch level {
        case 1: .size2M  // PDE with PS=1 maps a 2 MiB page (SDM Table 4-17)
        case 2: .size1G  // PDPTE with PS=1 maps a 1 GiB page (SDM Table 4-15)
        default: nil
        }
    }
}

/// i686 32-bit paging (Intel SDM Vol. 3A §4.3): page directory and page table; 4-byte entries; no NX.
public enum I686: PagingMode {
    /// ``Architecture/i686``.
    @inlinable public static var architecture: Architecture { .i686 }
    /// 2: page directory and page table.
    @inlinable public static var levelCount: Int { 2 }
    /// 10: 1,024 entries per table.
    @inlinable public static var indexBits: Int { 10 }
    /// 4 bytes per entry.
    @inlinable public static var entryByteCount: Int { 4 }
    /// 32: the whole 4 GiB linear space.
    @inlinable public static var virtualAddressBits: Int { 32 }
    /// 32: entries hold bits 31:12 of a frame (no PSE-36).
    @inlinable public static var physicalAddressBits: Int { 32 }
    /// Bits 31:12 (SDM Vol. 3A Table 4-5 and 4-6).
    @inlinable public static var frameAddressMask: UInt64 { 0xFFFF_F000 }
    /// 0: 32-bit paging has no execute-disable bit; every present page is executable.
    @inlinable public static var executeDisableBit: UInt64 { 0 }
    /// 4 MiB in the page directory (level 1, with CR4.PSE); none in a page table.
    /// - Parameter level: a table level, 0 for a page table.
    @inlinable public static func largeLeaf(atLevel level: Int) -> LeafSize? {
        level == 1 ? .size4M : nil  // PDE with PS=1 and CR4.PSE=1 maps 4 MiB (SDM Table 4-4)
    }
}

extension PagingMode {
    /// Checks that `mapping` could be mapped in this mode: 4 KiB-aligned, inside the virtual space (amd64:
    /// one canonical half; i686: below 4 GiB), without wrapping, and with a physical range the entries can
    /// name. Zero length always passes. What ``PageTable/map(_:)`` checks first, usable before any table
    /// exists (e.g. to size an arena).
    /// - Parameter mapping: the mapping to check.
    /// - Throws: the ``PageTableError`` that ``PageTable/map(_:)`` would throw for it.
    @inlinable
    public static func validate(_ mapping: Mapping) throws(PageTableError) {
        guard try checkedRange(mapping.virtualBase, mapping.length) != nil else { return }
        if case .unmapped = mapping.kind { return }
        try checkPhysical(mapping.physicalBase, mapping.length)
    }

    /// Checks a virtual range and returns its first and last linear addresses, or `nil` for length 0.
    @inlinable
    static func checkedRange(_ virtualBase: UInt64, _ length: UInt64, aligned: Bool = true) throws(PageTableError)
        -> (UInt64, UInt64)?
    {
        if aligned {
            guard virtualBase & 0xFFF == 0 else { throw .misaligned(.virtualAddress, virtualBase) }
            guard length & 0xFFF == 0 else { throw .misaligned(.length, length) }
        }
        guard length != 0 else { return nil }
        let (last, overflow) = virtualBase.addingReportingOverflow(length &- 1)
        guard !overflow else { throw .rangeOverflow(virtualAddress: virtualBase, length: length) }
        let outside = PageTableError.outsideVirtualSpace(
            virtualAddress: virtualBase, length: length, architecture: Self.architecture)
        if Self.virtualAddressBits == 48 {
            let halfTop: UInt64 = 1 << 47
            let upperStart: UInt64 = 0xFFFF_8000_0000_0000
            // Both ends in the lower half, or both in the upper half (the upper half runs to 2^64 - 1).
            guard last < halfTop || virtualBase >= upperStart else { throw outside }
        } else {
            guard last < Self.virtualSpaceSize else { throw outside }
        }
        return (Self.linear(virtualBase), Self.linear(last))
    }

    @inlinable
    static func checkPhysical(_ physicalBase: UInt64, _ length: UInt64) throws(PageTableError) {
        guard physicalBase & 0xFFF == 0 else { throw .misaligned(.physicalAddress, physicalBase) }
        let (last, overflow) = physicalBase.addingReportingOverflow(length &- 1)
        guard !overflow, last < Self.physicalSpaceSize else {
            throw .physicalAddressTooWide(
                physicalAddress: physicalBase, length: length, architecture: Self.architecture)
        }
    }
}
