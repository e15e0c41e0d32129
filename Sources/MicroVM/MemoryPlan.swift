import PageTables

/// Where everything goes in guest RAM for one configuration, checked before anything is allocated.
struct MemoryPlan {
    /// The page-table arena at the top of RAM.
    let arenaBase: UInt64
    let arenaSize: UInt64
    /// One past the image's last page.
    let imageEnd: UInt64
    /// The image as the boot-information block describes it: its first byte (flat: the load address; ELF:
    /// the first frame of its lowest segment) and its size in bytes (flat: the file's; ELF: up to the end
    /// of the last frame of its highest segment).
    let imageStart: UInt64, imageSize: UInt64
    /// The ELF segments, in program header order (empty for a flat image).
    var segments: [ELFSegment] = []
    /// Copy-on-write scratch frames: `[scratchBase, arenaBase)`, not mapped.
    var scratchBase: UInt64 { arenaBase - Layout.copyOnWriteScratchSize }
    /// The default address space: RAM identity-mapped except page 0, the image executable; for an ELF
    /// image, each segment's frames identity-mapped with the segment's permissions and its pages mapped
    /// at their virtual addresses.
    let defaultMappings: [Mapping]

    /// Most extra mappings the boot-information page can list.
    static let maximumExtraMappings = Int((4096 - BootInfo.mappingsOffset) / BootInfo.mappingRecordSize)

    /// Plans `configuration`; a flat image of `imageSize` bytes if given (the file's size, before it is
    /// read), else of `configuration.image`. An ELF image (``MachineConfiguration/ImageKind/elf(_:)``) is
    /// planned from its layout, whatever `imageSize` says.
    init(_ configuration: MachineConfiguration, imageSize: UInt64? = nil) throws(MachineError) {
        if case .elf(let elf) = configuration.imageKind {
            self = try MemoryPlan(configuration, elf: elf.layout)
            return
        }
        let size = configuration.memorySize
        let load = configuration.loadAddress
        let imageBytes = imageSize ?? UInt64(configuration.image.count)
        guard size & 0xFFF == 0 else { throw .memoryNotPageMultiple(size: size) }
        guard size <= Layout.maximumMemorySize else { throw .memoryTooLarge(size: size) }
        guard imageBytes > 0 else { throw .emptyImage }
        guard load & 0xFFF == 0 else { throw .loadAddressMisaligned(loadAddress: load) }
        guard load >= Layout.stackTop else { throw .imageOverlapsLowMemory(loadAddress: load) }
        try Self.validateExtraMappings(configuration)
        let arenaSize = Layout.arenaSize(
            memorySize: size, extraMappings: configuration.extraMappings, architecture: configuration.architecture)
        // No sum below overflows: RAM is at most 3 GiB, and so is the image; the load address is checked
        // against RAM before it is added to anything.
        let imagePages = (imageBytes + 0xFFF) & ~0xFFF
        let reserved = arenaSize + Layout.copyOnWriteScratchSize
        guard size >= Layout.stackTop + reserved + 0x1000 else {
            let imageEnd = load <= Layout.maximumMemorySize ? load + imagePages : 0
            throw .memoryTooSmall(size: size, needed: max(imageEnd, Layout.stackTop + 0x1000) + reserved)
        }
        guard load < size else { throw .loadAddressOutsideMemory(loadAddress: load, memorySize: size) }
        let imageEnd = load + imagePages
        guard imageEnd <= size else { throw .imageTooLarge(imageSize: imageBytes, loadAddress: load, memorySize: size) }
        let arenaBase = size - arenaSize
        guard imageEnd <= arenaBase - Layout.copyOnWriteScratchSize else {
            throw .imageOverlapsArena(imageEnd: imageEnd, arenaBase: arenaBase - Layout.copyOnWriteScratchSize)
        }
        let entry = configuration.effectiveEntryPoint
        guard entry >= load && entry < load + imageBytes else { throw .entryOutsideImage(entry: entry) }

        let extras = configuration.extraMappings
        guard extras.count <= Self.maximumExtraMappings else {
            throw .tooManyMappings(count: extras.count, maximum: Self.maximumExtraMappings)
        }
        for (i, a) in extras.enumerated() {
            for b in extras[(i + 1)...] where Self.overlap(a, b) { throw .mappingsOverlap(a, b) }
        }

        self.arenaSize = arenaSize
        self.arenaBase = arenaBase
        self.imageEnd = imageEnd
        imageStart = load
        self.imageSize = imageBytes
        defaultMappings = [
            .identity(0x1000, length: load - 0x1000, kind: .readWrite),
            .identity(load, length: imageEnd - load, kind: .readWriteExecute),
            .identity(imageEnd, length: arenaBase - Layout.copyOnWriteScratchSize - imageEnd, kind: .readWrite),
            .identity(arenaBase, length: arenaSize, kind: .readWrite),
        ].filter { $0.length > 0 }
    }

    /// Plans an ELF image of `layout` (its segments' bytes are not needed).
    ///
    /// W^X for the image: each segment's frames are identity-mapped with the segment's own permissions, so
    /// no host-made mapping makes a non-writable segment's frame writable or a non-executable segment's
    /// frame executable; RAM outside the segments stays read-write and not executable. Extra mappings may
    /// not overlap a segment's virtual pages, and may map its frames elsewhere only without adding write or
    /// (amd64) execute permission.
    init(_ configuration: MachineConfiguration, elf layout: ELFLayout) throws(MachineError) {
        let size = configuration.memorySize
        guard size & 0xFFF == 0 else { throw .memoryNotPageMultiple(size: size) }
        guard size <= Layout.maximumMemorySize else { throw .memoryTooLarge(size: size) }
        guard layout.architecture == configuration.architecture else {
            throw .imageArchitectureMismatch(image: layout.architecture, configured: configuration.architecture)
        }
        try Self.validateExtraMappings(configuration)
        let extras = configuration.extraMappings
        let segments = layout.segments
        guard extras.count + segments.count <= Self.maximumImageRecords else {
            throw .tooManyImageRecords(
                segments: segments.count, mappings: extras.count, maximum: Self.maximumImageRecords)
        }
        let arenaSize = Layout.arenaSize(
            memorySize: size, extraMappings: extras + segments.map(\.mapping), architecture: configuration.architecture)
        let reserved = arenaSize + Layout.copyOnWriteScratchSize
        // The layout checked that no segment's physical range wraps or passes 2^52.
        let physicalEnd = segments.map { $0.pagePhysicalBase + $0.pageLength }.max() ?? 0
        guard size >= Layout.stackTop + reserved + 0x1000 else {
            throw .memoryTooSmall(size: size, needed: max(physicalEnd, Layout.stackTop + 0x1000) + reserved)
        }
        let arenaBase = size - arenaSize
        let scratchBase = arenaBase - Layout.copyOnWriteScratchSize
        for segment in segments {
            let base = segment.pagePhysicalBase
            let end = base + segment.pageLength
            guard base < size && end <= size else {
                throw .segmentOutsideMemory(segment: segment.index, base: base, end: end, memorySize: size)
            }
            guard base >= Layout.stackTop else {
                throw .segmentOverlapsLowMemory(segment: segment.index, virtual: false, base: base, end: end)
            }
            guard end <= scratchBase else {
                throw .segmentOverlapsArena(
                    segment: segment.index, virtual: false, base: base, end: end, scratchBase: scratchBase)
            }
            // Virtual pages: the reserved areas' identity maps stay where the contract says they are.
            let virtualBase = segment.pageVirtualBase
            let virtualLast = virtualBase &+ (segment.pageLength &- 1)
            if virtualBase < Layout.stackTop {
                throw .segmentOverlapsLowMemory(
                    segment: segment.index, virtual: true, base: virtualBase, end: virtualLast &+ 1)
            }
            if virtualBase < size && virtualLast >= scratchBase {
                throw .segmentOverlapsArena(
                    segment: segment.index, virtual: true, base: virtualBase, end: virtualLast &+ 1,
                    scratchBase: scratchBase)
            }
        }
        let entry = configuration.effectiveEntryPoint(elf: layout)
        guard segments.contains(where: { $0.permissions.contains(.executable) && $0.contains(virtualAddress: entry) })
        else { throw .entryOutsideSegments(entry: entry) }
        for (i, a) in extras.enumerated() {
            for b in extras[(i + 1)...] where Self.overlap(a, b) { throw .mappingsOverlap(a, b) }
        }
        for mapping in extras {
            for segment in segments {
                if Self.overlap(mapping, segment.mapping) {
                    throw .mappingOverlapsSegment(mapping: mapping, segment: segment.index)
                }
                let frames = Mapping(
                    physicalBase: segment.pagePhysicalBase, virtualBase: segment.pagePhysicalBase,
                    length: segment.pageLength, kind: segment.kind)
                let aliased = Mapping(
                    physicalBase: mapping.physicalBase, virtualBase: mapping.physicalBase, length: mapping.length,
                    kind: mapping.kind)
                guard Self.overlap(aliased, frames) else { continue }
                if mapping.kind.isWritable && !segment.permissions.contains(.writable) {
                    throw .mappingWidensSegment(
                        mapping: mapping, segment: segment.index, permissions: segment.permissions.description,
                        added: "writable")
                }
                // i686 has no NX: every mapped page is executable there, so execute adds nothing.
                if configuration.architecture == .amd64 && mapping.kind.isExecutable
                    && !segment.permissions.contains(.executable)
                {
                    throw .mappingWidensSegment(
                        mapping: mapping, segment: segment.index, permissions: segment.permissions.description,
                        added: "executable")
                }
            }
        }

        self.arenaSize = arenaSize
        self.arenaBase = arenaBase
        self.segments = segments
        imageStart = segments.map(\.pagePhysicalBase).min() ?? 0
        imageEnd = physicalEnd
        imageSize = physicalEnd - imageStart
        defaultMappings = Self.elfMappings(
            segments: segments, scratchBase: scratchBase, arenaBase: arenaBase, arenaSize: arenaSize)
    }

    /// Most boot-information mapping records next to the version-2 extension: extra mappings plus segments.
    static let maximumImageRecords = ELFLayout.maximumSegments

    /// RAM identity-mapped from 0x1000 to the scratch (read-write, not executable) except each segment's
    /// frames, which carry the segment's kind; the arena read-write; then each segment at its virtual pages
    /// (where they are not the identity pages already), shadowing the identity map where they overlap it.
    static func elfMappings(segments: [ELFSegment], scratchBase: UInt64, arenaBase: UInt64, arenaSize: UInt64)
        -> [Mapping]
    {
        var mappings: [Mapping] = []
        var cursor: UInt64 = 0x1000
        // Frames of two segments overlap only on a shared page, where the layout made them agree on the kind.
        for segment in segments.sorted(by: { $0.pagePhysicalBase < $1.pagePhysicalBase }) {
            let base = segment.pagePhysicalBase
            let end = base + segment.pageLength
            if base > cursor { mappings.append(.identity(cursor, length: base - cursor, kind: .readWrite)) }
            let start = max(base, cursor)
            if end > start { mappings.append(.identity(start, length: end - start, kind: segment.kind)) }
            cursor = max(cursor, end)
        }
        if scratchBase > cursor { mappings.append(.identity(cursor, length: scratchBase - cursor, kind: .readWrite)) }
        mappings.append(.identity(arenaBase, length: arenaSize, kind: .readWrite))
        for segment in segments where segment.pageVirtualBase != segment.pagePhysicalBase {
            mappings.append(segment.mapping)
        }
        return mappings
    }

    /// Checks that the mode can hold every extra mapping, before they are counted into the arena's size.
    static func validateExtraMappings(_ configuration: MachineConfiguration) throws(MachineError) {
        for mapping in configuration.extraMappings {
            do throws(PageTableError) {
                switch configuration.architecture {
                case .amd64: try AMD64.validate(mapping)
                case .i686: try I686.validate(mapping)
                }
            } catch {
                throw .mappingRejected(mapping: mapping, reason: error)
            }
        }
    }

    /// Whether two mappings' virtual ranges share a byte (lengths of zero never do).
    static func overlap(_ a: Mapping, _ b: Mapping) -> Bool {
        guard a.length > 0, b.length > 0 else { return false }
        let aLast = a.virtualBase &+ (a.length &- 1)
        let bLast = b.virtualBase &+ (b.length &- 1)
        return a.virtualBase <= bLast && b.virtualBase <= aLast
    }
}
