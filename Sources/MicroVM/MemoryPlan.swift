import PageTables

/// Where everything goes in guest RAM for one configuration, checked before anything is allocated.
struct MemoryPlan {
    /// The page-table arena at the top of RAM.
    let arenaBase: UInt64
    let arenaSize: UInt64
    /// One past the image's last page.
    let imageEnd: UInt64
    /// Copy-on-write scratch frames: `[scratchBase, arenaBase)`, not mapped.
    var scratchBase: UInt64 { arenaBase - Layout.copyOnWriteScratchSize }
    /// The default address space: RAM identity-mapped except page 0, the image executable.
    let defaultMappings: [Mapping]

    /// Most extra mappings the boot-information page can list.
    static let maximumExtraMappings = Int((4096 - BootInfo.mappingsOffset) / BootInfo.mappingRecordSize)

    init(_ configuration: MachineConfiguration, imageSize: UInt64? = nil) throws(MachineError) {
        let size = configuration.memorySize
        let load = configuration.loadAddress
        let imageBytes = imageSize ?? UInt64(configuration.image.count)
        guard size & 0xFFF == 0 else { throw .memoryNotPageMultiple(size: size) }
        guard size <= Layout.maximumMemorySize else { throw .memoryTooLarge(size: size) }
        guard imageBytes > 0 else { throw .emptyImage }
        guard load & 0xFFF == 0 else { throw .loadAddressMisaligned(loadAddress: load) }
        guard load >= Layout.stackTop else { throw .imageOverlapsLowMemory(loadAddress: load) }
        // Mappings the mode cannot hold are rejected before they are counted into the arena's size.
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
        defaultMappings = [
            .identity(0x1000, length: load - 0x1000, kind: .readWrite),
            .identity(load, length: imageEnd - load, kind: .readWriteExecute),
            .identity(imageEnd, length: arenaBase - Layout.copyOnWriteScratchSize - imageEnd, kind: .readWrite),
            .identity(arenaBase, length: arenaSize, kind: .readWrite),
        ].filter { $0.length > 0 }
    }

    /// Whether two mappings' virtual ranges share a byte (lengths of zero never do).
    static func overlap(_ a: Mapping, _ b: Mapping) -> Bool {
        guard a.length > 0, b.length > 0 else { return false }
        let aLast = a.virtualBase &+ (a.length &- 1)
        let bLast = b.virtualBase &+ (b.length &- 1)
        return a.virtualBase <= bLast && b.virtualBase <= aLast
    }
}
