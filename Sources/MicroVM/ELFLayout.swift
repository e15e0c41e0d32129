public import PageTables

/// One loadable segment of an ELF file (a `PT_LOAD` program header with a non-zero `p_memsz`): where its
/// bytes are in the file, where they go in guest-physical memory and at which virtual address the guest
/// sees them, with which permissions.
public struct ELFSegment: Equatable, Sendable {
    /// `p_flags`' permission bits. x86 pages are always readable, so ``readable`` is recorded but grants
    /// nothing a present page does not already have.
    public struct Permissions: OptionSet, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `PF_X` (bit 0).
        public static let executable = Permissions(rawValue: 1 << 0)
        /// `PF_W` (bit 1).
        public static let writable = Permissions(rawValue: 1 << 1)
        /// `PF_R` (bit 2).
        public static let readable = Permissions(rawValue: 1 << 2)

        /// `r-x`, `rw-`, `r--`, as `readelf` prints them.
        public var description: String {
            (contains(.readable) ? "r" : "-") + (contains(.writable) ? "w" : "-") + (contains(.executable) ? "x" : "-")
        }
    }

    /// Its index in the program header table (the first header is 0).
    public let index: Int
    /// `p_vaddr`.
    public let virtualAddress: UInt64
    /// `p_paddr`: where the bytes go in guest RAM.
    public let physicalAddress: UInt64
    /// `p_offset`.
    public let fileOffset: UInt64
    /// `p_filesz`: bytes taken from the file; the rest up to ``memorySize`` is zero-filled (bss).
    public let fileSize: UInt64
    /// `p_memsz`, never zero.
    public let memorySize: UInt64
    /// `p_flags & (PF_R | PF_W | PF_X)`.
    public let permissions: Permissions

    /// The page kind of the segment's pages: writable exactly with `PF_W`, executable exactly with `PF_X`.
    public var kind: MappingKind {
        .basic(writable: permissions.contains(.writable), executable: permissions.contains(.executable))
    }
    /// The first byte of the segment's first page, virtual.
    public var pageVirtualBase: UInt64 { virtualAddress & ~0xFFF }
    /// The first byte of the segment's first frame.
    public var pagePhysicalBase: UInt64 { physicalAddress & ~0xFFF }
    /// Bytes of whole pages the segment touches. ``ELFLayout`` checked that the ranges neither wrap nor leave
    /// the address space, so this cannot overflow.
    public var pageLength: UInt64 { ((virtualAddress &+ memorySize &+ 0xFFF) & ~0xFFF) &- pageVirtualBase }
    /// The pages the host maps for it: ``pageVirtualBase`` onto ``pagePhysicalBase``, ``pageLength`` bytes,
    /// with ``kind``.
    public var mapping: Mapping {
        Mapping(physicalBase: pagePhysicalBase, virtualBase: pageVirtualBase, length: pageLength, kind: kind)
    }
    /// Whether `virtualAddress` is one of the segment's bytes (not just on one of its pages).
    public func contains(virtualAddress address: UInt64) -> Bool {
        address >= virtualAddress && address - virtualAddress < memorySize
    }
}

/// What an ELF file asks to be loaded, read from its headers alone and checked before any segment's bytes
/// are read: the architecture, the entry point and the loadable segments.
///
/// The checks are the file's own (ELF header fields, program header bounds, each segment's sizes and
/// alignment, overlaps and shared pages between segments, the entry point); where the segments may go in a
/// given machine's RAM is checked by the machine (``MachineConfiguration/validateLayout(elf:)``).
///
/// `p_align` is not used: placement is by `p_paddr` and `p_vaddr`, which must agree modulo 4 KiB. Program
/// headers other than `PT_LOAD` are ignored, as are `PT_LOAD` headers with a zero `p_memsz` (which still
/// must lie inside the file).
public struct ELFLayout: Equatable, Sendable {
    /// The architecture the file is for.
    public let architecture: Architecture
    /// `e_entry`.
    public let entryPoint: UInt64
    /// The loadable segments, in program header order.
    public let segments: [ELFSegment]

    /// Most loadable segments a file may have: as many as the boot-information page can list.
    public static let maximumSegments = Int(
        (4096 - BootInfo.mappingsOffset - BootInfo.elfExtensionSize) / BootInfo.mappingRecordSize)
    /// Bytes of the largest ELF header (ELF64); enough to parse either class.
    public static let headerSize = 64

    /// `ELFCLASS32` / `ELFCLASS64`.
    static func fileClass(for architecture: Architecture) -> UInt8 { architecture == .amd64 ? 2 : 1 }
    /// `EM_X86_64` (62) / `EM_386` (3).
    static func machine(for architecture: Architecture) -> UInt16 { architecture == .amd64 ? 62 : 3 }

    /// Whether `bytes` start with the ELF magic `\x7fELF`.
    public static func hasMagic(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.starts(with: [0x7F, 0x45, 0x4C, 0x46])
    }

    /// Parses the layout of the whole file `bytes`.
    /// - Throws: ``ELFError`` naming the first problem.
    public init(bytes: [UInt8], architecture: Architecture) throws(ELFError) {
        try self.init(fileSize: UInt64(bytes.count), architecture: architecture) { (offset, count) throws(ELFError) in
            Self.slice(bytes, offset: offset, count: count)
        }
    }

    /// Parses the layout of a file of `fileSize` bytes, reading only its ELF header and program header table
    /// through `read` (at most 64 bytes, then at most 65,534 x 56).
    ///
    /// - Parameter read: returns `count` bytes at `offset` of the file (fewer only where the file ends);
    ///   throws ``ELFError/readFailed(_:)`` for an I/O error.
    /// - Throws: ``ELFError`` naming the first problem.
    public init(
        fileSize: UInt64, architecture: Architecture,
        read: (_ offset: UInt64, _ count: Int) throws(ELFError) -> [UInt8]
    ) throws(ELFError) {
        let header = ByteReader(try read(0, Int(min(fileSize, UInt64(Self.headerSize)))))
        guard header.count >= 4, Self.hasMagic(header.bytes) else {
            throw header.count < 4 && fileSize >= 4
                ? .truncatedHeader(needed: 4, fileSize: UInt64(header.count)) : .notELF
        }
        guard header.count >= 16 else { throw .truncatedHeader(needed: 16, fileSize: fileSize) }
        // e_ident: EI_CLASS (4), EI_DATA (5), EI_VERSION (6); EI_OSABI and the padding are not checked.
        let fileClass = header.u8(4)
        guard fileClass == 1 || fileClass == 2 else { throw .unknownClass(fileClass) }
        guard fileClass == Self.fileClass(for: architecture) else {
            throw .classMismatch(fileClass: fileClass, architecture: architecture)
        }
        guard header.u8(5) == 1 else { throw .notLittleEndian(header.u8(5)) }
        guard header.u8(6) == 1 else { throw .unsupportedVersion(field: "EI_VERSION", value: UInt32(header.u8(6))) }
        let wide = fileClass == 2
        let headerBytes = wide ? 64 : 52
        guard header.count >= headerBytes else { throw .truncatedHeader(needed: headerBytes, fileSize: fileSize) }

        let type = header.u16(16)
        guard type == 2 else { throw .notExecutable(type: type) }
        let machine = header.u16(18)
        guard machine == Self.machine(for: architecture) else {
            throw .machineMismatch(machine: machine, architecture: architecture)
        }
        let version = header.u32(20)
        guard version == 1 else { throw .unsupportedVersion(field: "e_version", value: version) }
        let entry = wide ? header.u64(24) : UInt64(header.u32(24))
        let tableOffset = wide ? header.u64(32) : UInt64(header.u32(28))
        let entrySize = Int(wide ? header.u16(54) : header.u16(42))
        let count = Int(wide ? header.u16(56) : header.u16(44))
        let expectedEntrySize = wide ? 56 : 32

        guard count != 0 else { throw .noLoadableSegment }
        guard count != 0xFFFF else { throw .extendedProgramHeaderCount }
        guard entrySize == expectedEntrySize else {
            throw .programHeaderSizeMismatch(size: UInt16(entrySize), expected: expectedEntrySize)
        }
        let tableSize = UInt64(count * entrySize)  // at most 65,534 x 56: no overflow
        let (tableEnd, wraps) = tableOffset.addingReportingOverflow(tableSize)
        guard !wraps, tableEnd <= fileSize else {
            throw .programHeadersOutsideFile(
                offset: tableOffset, count: count, entrySize: entrySize, fileSize: fileSize)
        }
        let table = ByteReader(try read(tableOffset, Int(tableSize)))
        guard table.count == Int(tableSize) else {
            throw .programHeadersOutsideFile(
                offset: tableOffset, count: count, entrySize: entrySize, fileSize: tableOffset + UInt64(table.count))
        }

        var segments: [ELFSegment] = []
        for index in 0..<count {
            let at = index * entrySize
            guard table.u32(at) == 1 else { continue }  // PT_LOAD
            let flags, offset, virtualAddress, physicalAddress, fileBytes, memoryBytes: UInt64
            if wide {
                flags = UInt64(table.u32(at + 4))
                offset = table.u64(at + 8)
                virtualAddress = table.u64(at + 16)
                physicalAddress = table.u64(at + 24)
                fileBytes = table.u64(at + 32)
                memoryBytes = table.u64(at + 40)
            } else {
                offset = UInt64(table.u32(at + 4))
                virtualAddress = UInt64(table.u32(at + 8))
                physicalAddress = UInt64(table.u32(at + 12))
                fileBytes = UInt64(table.u32(at + 16))
                memoryBytes = UInt64(table.u32(at + 20))
                flags = UInt64(table.u32(at + 24))
            }
            guard fileBytes <= memoryBytes else {
                throw .segmentFileSizeExceedsMemorySize(segment: index, fileSize: fileBytes, memorySize: memoryBytes)
            }
            let (fileEnd, fileWraps) = offset.addingReportingOverflow(fileBytes)
            guard !fileWraps, fileEnd <= fileSize else {
                throw .segmentOutsideFile(segment: index, offset: offset, size: fileBytes, fileSize: fileSize)
            }
            guard memoryBytes > 0 else { continue }
            guard virtualAddress & 0xFFF == physicalAddress & 0xFFF else {
                throw .segmentMisaligned(
                    segment: index, virtualAddress: virtualAddress, physicalAddress: physicalAddress)
            }
            guard Self.virtualRangeFits(virtualAddress, memoryBytes, architecture) else {
                throw .segmentOutsideVirtualSpace(
                    segment: index, virtualAddress: virtualAddress, memorySize: memoryBytes, architecture: architecture)
            }
            guard Self.physicalRangeFits(physicalAddress, memoryBytes, architecture) else {
                throw .segmentOutsidePhysicalSpace(
                    segment: index, physicalAddress: physicalAddress, memorySize: memoryBytes,
                    architecture: architecture)
            }
            guard segments.count < Self.maximumSegments else {
                var loadable = segments.count
                for later in index..<count where table.u32(later * entrySize) == 1 {
                    let at = later * entrySize
                    if (wide ? table.u64(at + 40) : UInt64(table.u32(at + 20))) != 0 { loadable += 1 }
                }
                throw .tooManySegments(count: loadable, maximum: Self.maximumSegments)
            }
            segments.append(
                ELFSegment(
                    index: index, virtualAddress: virtualAddress, physicalAddress: physicalAddress, fileOffset: offset,
                    fileSize: fileBytes, memorySize: memoryBytes,
                    permissions: ELFSegment.Permissions(rawValue: UInt32(truncatingIfNeeded: flags) & 7)))
        }
        guard !segments.isEmpty else { throw .noLoadableSegment }
        try Self.checkPairs(segments)
        guard segments.contains(where: { $0.permissions.contains(.executable) && $0.contains(virtualAddress: entry) })
        else { throw .entryOutsideExecutableSegments(entry: entry) }

        self.architecture = architecture
        self.entryPoint = entry
        self.segments = segments
    }

    /// Whether `[address, address + length)` (length > 0), widened to whole pages, lies in the virtual space:
    /// amd64 one canonical half (48 bits), i686 the low 4 GiB.
    static func virtualRangeFits(_ address: UInt64, _ length: UInt64, _ architecture: Architecture) -> Bool {
        let (last, wraps) = address.addingReportingOverflow(length - 1)
        guard !wraps else { return false }
        let pageLast = last | 0xFFF
        switch architecture {
        case .amd64: return pageLast < 1 << 47 || address >= 0xFFFF_8000_0000_0000
        case .i686: return pageLast < 1 << 32
        }
    }

    /// Whether `[address, address + length)`, widened to whole pages, lies below the page tables' physical
    /// limit (amd64 52 bits, i686 32 bits).
    static func physicalRangeFits(_ address: UInt64, _ length: UInt64, _ architecture: Architecture) -> Bool {
        let (last, wraps) = address.addingReportingOverflow(length - 1)
        return !wraps && last | 0xFFF < (architecture == .amd64 ? 1 << 52 : 1 << 32)
    }

    /// Refuses segments that share bytes, and segments that share a page (virtual or physical) unless they
    /// agree on its permissions and on its placement (`p_vaddr - p_paddr`).
    static func checkPairs(_ segments: [ELFSegment]) throws(ELFError) {
        for (i, a) in segments.enumerated() {
            for b in segments[(i + 1)...] {
                for physical in [false, true] {
                    let aStart = physical ? a.physicalAddress : a.virtualAddress
                    let bStart = physical ? b.physicalAddress : b.virtualAddress
                    // Last bytes: the ranges were checked not to wrap.
                    let aLast = aStart + (a.memorySize - 1)
                    let bLast = bStart + (b.memorySize - 1)
                    if aStart <= bLast && bStart <= aLast {
                        throw .segmentsOverlap(
                            first: a.index, second: b.index, physical: physical, address: max(aStart, bStart))
                    }
                    guard aStart & ~0xFFF <= bLast | 0xFFF && bStart & ~0xFFF <= aLast | 0xFFF else { continue }
                    let page = aStart < bStart ? aLast & ~0xFFF : bLast & ~0xFFF
                    guard a.kind == b.kind else {
                        throw .segmentsSharePageWithDifferentPermissions(
                            first: a.index, second: b.index, physical: physical, page: page,
                            firstPermissions: a.permissions.description, secondPermissions: b.permissions.description)
                    }
                    guard a.virtualAddress &- a.physicalAddress == b.virtualAddress &- b.physicalAddress else {
                        throw .segmentsSharePageAtDifferentOffsets(
                            first: a.index, second: b.index, physical: physical, page: page)
                    }
                }
            }
        }
    }

    /// `count` bytes of `bytes` at `offset`, fewer where it ends.
    static func slice(_ bytes: [UInt8], offset: UInt64, count: Int) -> [UInt8] {
        guard offset < UInt64(bytes.count) else { return [] }
        let start = Int(offset)
        return Array(bytes[start..<(start + min(count, bytes.count - start))])
    }

    static func className(_ value: UInt8) -> String {
        switch value {
        case 1: "ELFCLASS32"
        case 2: "ELFCLASS64"
        default: "\(value)"
        }
    }

    static func machineName(_ value: UInt16) -> String {
        switch value {
        case 3: "EM_386 (3)"
        case 62: "EM_X86_64 (62)"
        default: "\(value)"
        }
    }

    static func typeName(_ value: UInt16) -> String {
        switch value {
        case 0: "ET_NONE (0)"
        case 1: "ET_REL (1, an object file)"
        case 3: "ET_DYN (3, a shared object or position-independent executable)"
        case 4: "ET_CORE (4)"
        default: "\(value)"
        }
    }
}

/// An ELF guest: its ``ELFLayout`` and the file bytes of each segment, ready to be placed in guest RAM.
public struct ELFImage: Equatable, Sendable {
    /// The headers' view of the file.
    public let layout: ELFLayout
    /// The `p_filesz` bytes of each segment of ``ELFLayout/segments``, in the same order.
    public let contents: [[UInt8]]

    /// Parses a whole ELF file.
    /// - Throws: ``ELFError`` naming the first problem.
    public init(bytes: [UInt8], architecture: Architecture) throws(ELFError) {
        let layout = try ELFLayout(bytes: bytes, architecture: architecture)
        try self.init(layout: layout) { (offset, count) throws(ELFError) in
            ELFLayout.slice(bytes, offset: offset, count: count)
        }
    }

    /// Reads the segments of `layout` through `read` (`count` bytes at `offset`, fewer only where the file
    /// ends): at most the sum of the segments' `p_filesz`.
    /// - Throws: ``ELFError/segmentOutsideFile(segment:offset:size:fileSize:)`` if the file is shorter than
    ///   the layout said (it shrank), or what `read` throws.
    public init(layout: ELFLayout, read: (_ offset: UInt64, _ count: Int) throws(ELFError) -> [UInt8]) throws(ELFError)
    {
        var contents: [[UInt8]] = []
        contents.reserveCapacity(layout.segments.count)
        for segment in layout.segments {
            // p_filesz <= p_memsz, and the segment fitted the address space: it fits an Int on 64-bit hosts.
            let bytes = segment.fileSize == 0 ? [] : try read(segment.fileOffset, Int(segment.fileSize))
            guard bytes.count == Int(segment.fileSize) else {
                throw .segmentOutsideFile(
                    segment: segment.index, offset: segment.fileOffset, size: segment.fileSize,
                    fileSize: segment.fileOffset + UInt64(bytes.count))
            }
            contents.append(bytes)
        }
        self.layout = layout
        self.contents = contents
    }
}

/// Little-endian loads from a byte array; a load past the end reads zero bytes there (the parser checks
/// lengths before it reads, so that never decides anything).
struct ByteReader {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var count: Int { bytes.count }

    func u8(_ offset: Int) -> UInt8 { offset >= 0 && offset < bytes.count ? bytes[offset] : 0 }
    func u16(_ offset: Int) -> UInt16 { UInt16(u8(offset)) | UInt16(u8(offset + 1)) << 8 }
    func u32(_ offset: Int) -> UInt32 { UInt32(u16(offset)) | UInt32(u16(offset + 2)) << 16 }
    func u64(_ offset: Int) -> UInt64 { UInt64(u32(offset)) | UInt64(u32(offset + 4)) << 32 }
}
