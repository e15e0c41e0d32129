import PageTables
import PageTablesTestSupport

/// Stores holding several address spaces, built and read by hand (raw entry writes on ``TableMemory``), so
/// the tests of the multi-space walk do not rely on the code under test to set up or judge sharing.
enum RawTables {
    static let intermediate: UInt64 = 0x23  // P | R/W | A
    static let user: UInt64 = 0x4
    static let pageSize: UInt64 = 0x80

    /// The index of `va` in the table at `level`.
    static func index<Mode: PagingMode>(_: Mode.Type, _ va: UInt64, level: Int) -> Int {
        Int((va >> UInt64(Mode.shift(ofLevel: level))) & UInt64(Mode.entriesPerTable - 1))
    }

    /// The entry of `page` at `index`.
    static func entry<Mode: PagingMode>(_ memory: TableMemory<Mode>, page: Int, index: Int) -> UInt64 {
        memory.read(.init(page: page, offset: index * Mode.entryByteCount))
    }

    /// The page of the table `entry` references at `level`, or `nil` for an absent entry or a large leaf.
    static func child<Mode: PagingMode>(_ memory: TableMemory<Mode>, _ entry: UInt64, level: Int) -> Int? {
        guard entry & 1 != 0, level > 0 else { return nil }
        if entry & pageSize != 0, Mode.largeLeaf(atLevel: level) != nil { return nil }
        return memory.table(atPhysicalAddress: entry & Mode.frameAddressMask)?.page
    }

    /// The tables on the way from `root` down to the table at `depth` for `va` (root first), or `nil` when
    /// an entry on the way is absent or a large leaf.
    static func path<Mode: PagingMode>(_ memory: TableMemory<Mode>, root: Int, va: UInt64, depth: Int) -> [Int]? {
        var pages = [root]
        var level = Mode.levelCount - 1
        while pages.count <= depth {
            let entry = entry(memory, page: pages.last!, index: index(Mode.self, va, level: level))
            guard let next = child(memory, entry, level: level) else { return nil }
            pages.append(next)
            level -= 1
        }
        return pages
    }

    /// Every table at `depth` under `root`, with the first address of the block it maps (canonical).
    static func tables<Mode: PagingMode>(_ memory: TableMemory<Mode>, root: Int, depth: Int) -> [(
        va: UInt64, page: Int
    )] {
        var found: [(UInt64, Int)] = []
        func visit(_ page: Int, level: Int, base: UInt64) {
            let d = Mode.levelCount - 1 - level
            if d == depth {
                found.append((Mode.canonical(base), page))
                return
            }
            for i in 0..<Mode.entriesPerTable {
                let e = entry(memory, page: page, index: i)
                guard let next = child(memory, e, level: level) else { continue }
                visit(next, level: level - 1, base: base + UInt64(i) << UInt64(Mode.shift(ofLevel: level)))
            }
        }
        visit(root, level: Mode.levelCount - 1, base: 0)
        return found
    }

    /// `page` and every table under it (a table at `level`).
    static func subtree<Mode: PagingMode>(_ memory: TableMemory<Mode>, page: Int, level: Int) -> Set<Int> {
        var pages: Set<Int> = [page]
        guard level > 0 else { return pages }
        for i in 0..<Mode.entriesPerTable {
            if let next = child(memory, entry(memory, page: page, index: i), level: level) {
                pages.formUnion(subtree(memory, page: next, level: level - 1))
            }
        }
        return pages
    }

    /// Makes `target`'s tables use, for the block of `va`, the table at `depth` that `owner`'s tables use for
    /// the block of `ownerVA`: the entry one level up is copied, and the tables above it in `target` are
    /// allocated (P, R/W, A; U/S when the copied entry has it) where missing.
    /// - Returns: the shared table's page, or `nil` (nothing written) when the owner has no table there, a
    ///   large leaf is in the way, or `target`'s path runs through a table in `forbidden`.
    @discardableResult
    static func link<Mode: PagingMode>(
        _ memory: inout TableMemory<Mode>, owner: Int, ownerVA: UInt64, target: Int, va: UInt64, depth: Int,
        forbidden: Set<Int> = []
    ) -> Int? {
        guard let ownerPath = path(memory, root: owner, va: ownerVA, depth: depth) else { return nil }
        let shared = ownerPath[depth]
        let level = Mode.levelCount - depth  // the level of the table holding the linking entry
        let linked = entry(memory, page: ownerPath[depth - 1], index: index(Mode.self, ownerVA, level: level))
        let userBit = linked & user
        // Check target's path first, so nothing is written when the link is refused.
        var page = target
        var l = Mode.levelCount - 1
        while l > level {
            guard !forbidden.contains(page) else { return nil }
            let e = entry(memory, page: page, index: index(Mode.self, va, level: l))
            if e & 1 == 0 { break }
            guard let next = child(memory, e, level: l) else { return nil }
            page = next
            l -= 1
        }
        if l == level, forbidden.contains(page) { return nil }
        page = target
        l = Mode.levelCount - 1
        while l > level {
            let i = index(Mode.self, va, level: l)
            var e = entry(memory, page: page, index: i)
            if e & 1 == 0 {
                let table = try! memory.allocate()
                e = memory.physicalAddress(of: table) | intermediate
            }
            memory.write(.init(page: page, offset: i * Mode.entryByteCount), e | userBit)
            page = child(memory, e, level: l)!
            l -= 1
        }
        memory.write(.init(page: page, offset: index(Mode.self, va, level: level) * Mode.entryByteCount), linked)
        return shared
    }

    /// Each space's pages (canonical address >> 12 -> page) as a multi-space walk describes them: its own
    /// mappings, plus the owner's pages for every reference.
    static func pages(of walks: [SpaceWalk]) -> [UInt64: [UInt64: ModelPage]] {
        var result: [UInt64: [UInt64: ModelPage]] = [:]
        for space in walks {
            result[space.root] = [:]
            for item in space.items {
                switch item {
                case .mapping(let leaf):
                    for i in 0..<(leaf.length >> 12) {
                        result[space.root]![(leaf.virtualAddress >> 12) &+ i] = ModelPage(
                            frame: leaf.physicalAddress + i << 12, kind: leaf.kind, user: leaf.userAccessible)
                    }
                case .reference(let reference):
                    let theirs = reference.ownerVirtualAddress >> 12
                    let ours = reference.virtualAddress >> 12
                    let count = reference.length >> 12
                    for (page, value) in result[reference.space] ?? [:] where page >= theirs && page - theirs < count {
                        result[space.root]![ours + (page - theirs)] = value
                    }
                }
            }
        }
        return result
    }

    /// One item of a walk with what names frames of one particular store (roots, tables) replaced by the
    /// position of the space: what stays the same when the spaces are rebuilt elsewhere with the same sharing.
    enum ShapeItem: Hashable, CustomStringConvertible {
        case mapping(Translation)
        case reference(depth: Int, space: Int, virtualAddress: UInt64, ownerVirtualAddress: UInt64, length: UInt64)
        case tables(Int)

        var description: String {
            switch self {
            case .mapping(let leaf): "\(leaf)"
            case .reference(let depth, let space, let va, let ownerVA, let length):
                "depth \(depth) space #\(space) va \(va) owner va \(ownerVA) len \(length)"
            case .tables(let count): "\(count) tables"
            }
        }
    }

    /// The walk's shape: each space's items, then how many tables it owns.
    static func shape(of walks: [SpaceWalk]) -> [[ShapeItem]] {
        let position = Dictionary(uniqueKeysWithValues: walks.enumerated().map { ($1.root, $0) })
        return walks.map { space in
            space.items.map { item in
                switch item {
                case .mapping(let leaf): .mapping(leaf)
                case .reference(let r):
                    .reference(
                        depth: r.depth, space: position[r.space]!, virtualAddress: r.virtualAddress,
                        ownerVirtualAddress: r.ownerVirtualAddress, length: r.length)
                }
            } + [.tables(space.tables.count)]
        }
    }
}

extension PageTable {
    /// Runs `body` with the store switched to the space whose root is `root`, then switches back.
    mutating func inSpace<T>(_ root: Ops.TableAddress, _ body: (inout Self) throws -> T) rethrows -> T {
        let previous = ops.root
        ops.replaceRoot(with: root)
        defer { ops.replaceRoot(with: previous) }
        return try body(&self)
    }

    /// Every leaf of the space whose root is `root`.
    func translation(ofSpace root: Ops.TableAddress) throws -> [Translation] {
        var view = self
        view.ops.replaceRoot(with: root)
        return try Self.virtualSpace.flatMap { try view.translate(virtualBase: $0.base, length: $0.length) }
    }

    /// Rebuilds the spaces of `walks` in this store, the way a snapshot compactor would: one new root per
    /// space (the store's current root for the first), every mapping at its own leaf size, every reference
    /// linked.
    /// - Parameter afterItem: called after each item (a test freezes a movable store there).
    /// - Returns: the new root of each space, by old root.
    mutating func rebuild(_ walks: [SpaceWalk], afterItem: (inout Self, Int) -> Void = { _, _ in }) throws
        -> [UInt64: Ops.TableAddress]
    {
        var built: [UInt64: Ops.TableAddress] = [:]
        var itemCount = 0
        for (position, space) in walks.enumerated() {
            if position > 0 { ops.replaceRoot(with: try ops.allocateTable()) }
            built[space.root] = ops.root
            for item in space.items {
                switch item {
                case .mapping(let leaf):
                    try map(leaf.mapping, leafSizes: AllowedLeafSizes(only: leaf.leafSize))
                case .reference(let reference):
                    let linked = try linkShared(reference, builtRoots: built)
                    precondition(linked, "nothing to link for \(reference)")
                }
                built[space.root] = ops.root  // a movable store may have replaced it
                afterItem(&self, itemCount)
                built[space.root] = ops.root
                itemCount += 1
            }
        }
        return built
    }
}
