import KVMKit
import PageTables

/// What ``Snapshot/compacted()`` did.
public struct CompactionReport: Equatable, Sendable, CustomStringConvertible {
    /// RAM of the snapshot, and of the compacted one (kept frames, scratch frames and the new arena).
    public var originalMemorySize: UInt64, memorySize: UInt64
    /// Frames kept: every frame some space maps, once however many mappings reach it.
    public var framesKept: Int
    /// Mappings of a frame already kept (an alias, a shared page): how many copies compaction did not make.
    public var duplicatesDropped: Int
    /// Tables of the compacted snapshot, and of the original.
    public var tables: Int, originalTables: Int
    /// Bytes of the compacted image that are not zero: what it costs in memory and in a file.
    public var storedBytes: UInt64

    /// `16 MiB of RAM -> 15.7 MiB: 4020 frames kept, 2 duplicates dropped, 9 tables (were 12), 84 KiB stored`.
    public var description: String {
        "\(byteSize(originalMemorySize)) of RAM -> \(byteSize(memorySize)): \(framesKept) frames kept, "
            + "\(duplicatesDropped) duplicate\(duplicatesDropped == 1 ? "" : "s") dropped, \(tables) tables "
            + "(were \(originalTables)), \(byteSize(storedBytes)) stored"
    }
}

extension Snapshot {
    /// A compact copy of the snapshot: only the frames some address space maps (each once, however many
    /// mappings reach it), renumbered densely, with page tables rebuilt for them by the engine — every
    /// registered space and the one in CR3, with their shared tables shared again (PageTables'
    /// `PageTable.walkSpaces(roots:ranges:maximumTables:)` and `PageTable.linkShared(_:builtRoots:)`) —
    /// then fresh copy-on-write scratch frames and a new arena.
    ///
    /// Every virtual address maps what it mapped, with the same permissions; physical addresses change. So
    /// a guest that must find its data after compaction has to reach it through its page tables (as any guest
    /// of this host does: hypercall records and call areas are found through CR3), and a guest that edits
    /// its own tables through a mapping sees the old copies there (the live tables are the rebuilt ones).
    /// The boot-information block in memory keeps its old numbers. Frames mapped outside RAM (device
    /// addresses) are mapped as they were.
    ///
    /// - Throws: ``SnapshotError/compactionFailed(_:)`` when the tables cannot be walked or rebuilt.
    public func compacted() throws(SnapshotError) -> (snapshot: Snapshot, report: CompactionReport) {
        switch architecture {
        case .amd64: try compacted(AMD64.self)
        case .i686: try compacted(I686.self)
        }
    }

    func compacted<Mode: PagingMode>(_: Mode.Type) throws(SnapshotError) -> (snapshot: Snapshot, report: CompactionReport) {
        func failed(_ detail: String) -> SnapshotError { .compactionFailed(detail) }
        let old: GuestMemory
        do {
            old = try GuestMemory(privateViewOf: image)
        } catch {
            throw .machineFailed(error)
        }
        let mask = Mode.frameAddressMask
        var spaceRoots = roots
        let cr3Root = vcpu.specialRegisters.cr3 & mask
        if !spaceRoots.contains(cr3Root) { spaceRoots.append(cr3Root) }
        let reader = PageTable(
            ops: GuestTableOps<Mode>(memory: old, root: roots[0]), allowedLeafSizes: allowedLeafSizes,
            walkableLeafSizes: walkableLeafSizes)
        let walks: [SpaceWalk]
        do {
            walks = try reader.walkSpaces(roots: spaceRoots, maximumTables: Int(memorySize >> 12))
        } catch {
            throw failed("walking the tables: \(error)")
        }

        // Number the kept frames: in walk order, a frame reached again keeps its first number; the start of
        // every large leaf is aligned as its old frame was, so large leaves stay large.
        let pages = Int(memorySize >> 12)
        var number = [UInt32](repeating: 0, count: pages)  // new page number + 1; 0: not kept
        var next: UInt64 = 1  // page 0 stays free
        var kept = 0, duplicates = 0, tableBound = 0
        for walk in walks {
            for case .mapping(let translation) in walk.items {
                tableBound += Self.tablesFor(translation.length, Mode.self) + 1
                var page = translation.physicalAddress >> 12
                let end = (translation.physicalAddress &+ translation.length) >> 12
                let leafPages = translation.leafSize.byteCount >> 12
                if leafPages > 1, page < UInt64(pages), number[Int(page)] == 0 {
                    let offset = page % leafPages
                    while next % leafPages != offset { next += 1 }
                }
                while page < end && page < UInt64(pages) {
                    if number[Int(page)] == 0 {
                        number[Int(page)] = UInt32(next + 1)
                        next += 1
                        kept += 1
                    } else {
                        duplicates += 1
                    }
                    page += 1
                }
            }
        }
        // The new arena: as many tables as the old spaces had and 64 spare; a rebuild that needs more (large
        // leaves whose frames could not stay aligned split into tables) is done again with room for the worst.
        let originalTables = walks.reduce(0) { $0 + $1.tables.count }
        do {
            return try rebuild(
                walks: walks, number: number, pages: pages, dataEnd: next << 12, tables: originalTables + 64,
                old: old, cr3Root: cr3Root, kept: kept, duplicates: duplicates, Mode.self)
        } catch .compactionFailed(let detail) where detail.hasSuffix(": \(PageTableError.outOfTableMemory)") {
            return try rebuild(
                walks: walks, number: number, pages: pages, dataEnd: next << 12, tables: tableBound + walks.count + 64,
                old: old, cr3Root: cr3Root, kept: kept, duplicates: duplicates, Mode.self)
        }
    }

    /// Builds the compacted snapshot: the kept frames copied to their new places, the tables rebuilt in an
    /// arena of `tables` tables above the scratch frames.
    func rebuild<Mode: PagingMode>(
        walks: [SpaceWalk], number: [UInt32], pages: Int, dataEnd: UInt64, tables: Int, old: GuestMemory,
        cr3Root: UInt64, kept: Int, duplicates: Int, _: Mode.Type
    ) throws(SnapshotError) -> (snapshot: Snapshot, report: CompactionReport) {
        func failed(_ detail: String) -> SnapshotError { .compactionFailed(detail) }
        let mask = Mode.frameAddressMask
        let scratchBase = dataEnd
        let arenaBase = scratchBase + Layout.copyOnWriteScratchSize
        let arenaSize = UInt64(tables) << 12
        let size = arenaBase + arenaSize
        guard size <= Layout.maximumMemorySize else { throw failed("the compacted image would be \(byteSize(size))") }
        let memory: GuestMemory
        do {
            memory = try GuestMemory(size: size)
        } catch {
            throw .machineFailed(error)
        }
        for page in 0..<pages where number[page] != 0 && !old.isZeroPage(page) {
            memory.copy(from: old, page: page, toPage: Int(number[page] - 1))
        }

        // Rebuild: each space's leaves at their new frames and leaf size, then its shared tables linked.
        func newAddress(_ physical: UInt64) -> UInt64? {
            guard physical < memorySize else { return physical }  // outside RAM: a device, kept as it is
            let n = number[Int(physical >> 12)]
            return n == 0 ? nil : (UInt64(n - 1) << 12) | (physical & 0xFFF)
        }
        var builder: PageTable<GuestTableOps<Mode>>
        do {
            builder = PageTable(
                ops: try GuestTableOps<Mode>(memory: memory, arenaBase: arenaBase, arenaSize: arenaSize),
                allowedLeafSizes: allowedLeafSizes, walkableLeafSizes: walkableLeafSizes)
        } catch {
            throw failed("making the new arena: \(error)")
        }
        var built: [UInt64: UInt64] = [:]
        do throws(PageTableError) {
            for (index, walk) in walks.enumerated() {
                if index > 0 { builder.ops.replaceRoot(with: try builder.ops.allocateTable()) }
                built[walk.root] = builder.ops.root
                for item in walk.items {
                    switch item {
                    case .mapping(let translation):
                        // The new frames of a mapping, in runs that are contiguous.
                        var offset: UInt64 = 0
                        while offset < translation.length {
                            guard let start = newAddress(translation.physicalAddress &+ offset) else { break }
                            var length: UInt64 = 0x1000
                            while offset + length < translation.length,
                                newAddress(translation.physicalAddress &+ offset &+ length) == start &+ length
                            {
                                length += 0x1000
                            }
                            try builder.map(
                                Mapping(
                                    physicalBase: start, virtualBase: translation.virtualAddress &+ offset, length: length,
                                    kind: translation.kind, userAccessible: translation.userAccessible),
                                leafSizes: AllowedLeafSizes(only: translation.leafSize))
                            offset += length
                        }
                    case .reference(let reference):
                        try builder.linkShared(reference, builtRoots: built)
                    }
                }
            }
        } catch {
            throw failed("rebuilding the tables: \(error)")
        }
        builder.ops.replaceRoot(with: built[walks[0].root]!)

        var state = vcpu
        state.specialRegisters.cr3 = (built[cr3Root] ?? cr3Root) | (vcpu.specialRegisters.cr3 & ~mask)
        var configuration = self.configuration
        configuration.memorySize = size
        var compactCalls: CallInterface? = nil
        if let calls {
            guard let area = newAddress(calls.area),
                (0..<(calls.size >> 12)).allSatisfy({ newAddress(calls.area + $0 << 12) == area + $0 << 12 })
            else { throw failed("the call area is not contiguous after compaction") }
            compactCalls = calls
            compactCalls!.area = area
        }
        let compactImage = try SnapshotImage(copying: memory)
        let snapshot = Snapshot(
            configuration: configuration, image: compactImage, vcpu: state,
            roots: roots.map { built[$0] ?? $0 }, arena: builder.ops.arenaState, scratchNext: scratchBase,
            allowedLeafSizes: allowedLeafSizes, walkableLeafSizes: walkableLeafSizes, calls: compactCalls,
            waitingForCall: waitingForCall)
        let report = CompactionReport(
            originalMemorySize: memorySize, memorySize: size, framesKept: kept, duplicatesDropped: duplicates,
            tables: Int(builder.ops.bytesInUse >> 12), originalTables: walks.reduce(0) { $0 + $1.tables.count },
            storedBytes: snapshot.storedBytes)
        return (snapshot, report)
    }

    /// Most tables a mapping of `length` bytes needs with 4 KiB leaves, in `Mode`.
    static func tablesFor<Mode: PagingMode>(_ length: UInt64, _: Mode.Type) -> Int {
        var tables = 0
        for level in 0..<(Mode.levelCount - 1) {
            tables += Int(length >> UInt64(Mode.shift(ofLevel: level + 1))) + 2
        }
        return tables
    }
}
