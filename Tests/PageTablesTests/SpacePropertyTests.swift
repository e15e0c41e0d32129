import PageTables
import PageTablesTestSupport
import Testing

@Suite("properties: random layouts of spaces sharing tables agree with a reference model and rebuild shared")
struct SpacePropertyTests {
    static let layoutsPerMode = 250

    @Test(arguments: Architecture.allCases)
    func randomLayouts(_ architecture: Architecture) throws {
        switch architecture {
        case .amd64: try run(AMD64.self, seed: 11)
        case .i686: try run(I686.self, seed: 12)
        }
    }

    /// Builds random layouts of two or three spaces in one store (private maps, unmaps and protects with the
    /// engine, then tables shared by hand at random depths and addresses), keeping one model per space, and
    /// checks that the multi-space walk describes every space as its model says, and that rebuilding the
    /// walk into fresh tables (in place, and movable with a freeze half-way) gives the same translations and
    /// the same sharing.
    func run<Mode: PagingMode>(_: Mode.Type, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed &* 0x5DEE_CE66_D)
        let allowed: AllowedLeafSizes = Mode.architecture == .amd64 ? [.size2M] : [.size4M]
        let top = Mode.levelCount - 1
        for layout in 0..<Self.layoutsPerMode {
            var tables = PageTable(ops: ArrayTableOps<Mode>(), allowedLeafSizes: allowed)
            let spaceCount = 2 + Int(rng.next() % 2)
            var roots = [tables.ops.root]
            for _ in 1..<spaceCount { roots.append(try tables.ops.allocateTable()) }
            var models = [[UInt64: ModelPage]](repeating: [:], count: spaceCount)
            var log: [String] = []

            for space in 0..<spaceCount {
                for _ in 0..<(1 + rng.next() % 4) {
                    let step = Self.randomStep(Mode.self, &rng)
                    log.append("space \(space): \(step)")
                    try tables.inSpace(roots[space]) {
                        try PropertyTests.apply(
                            step, to: &$0, model: &models[space], executeAlwaysAllowed: Mode.architecture == .i686)
                    }
                }
            }
            // Share tables by hand, never writing into a table that is already shared (so every model stays
            // exact: a shared block's contents never change afterwards).
            var shared: Set<Int> = []
            for _ in 0..<(1 + rng.next() % 5) {
                let depth = 1 + Int(rng.next() % UInt64(top))
                let owner = Int(rng.next() % UInt64(spaceCount))
                let target = Int(rng.next() % UInt64(spaceCount))
                let candidates = RawTables.tables(tables.ops.memory, root: roots[owner].page, depth: depth)
                guard !candidates.isEmpty else { continue }
                let theirs = candidates[Int(rng.next() % UInt64(candidates.count))]
                let block: UInt64 = 1 << UInt64(Mode.shift(ofLevel: Mode.levelCount - depth))
                let ours = Self.randomAddress(Mode.self, &rng) & ~(block - 1)
                guard owner != target || ours != theirs.va,
                    let page = RawTables.link(
                        &tables.ops.memory, owner: roots[owner].page, ownerVA: theirs.va, target: roots[target].page,
                        va: ours, depth: depth, forbidden: shared)
                else { continue }
                log.append("space \(target) va \(hex(ours)) -> space \(owner) va \(hex(theirs.va)) at depth \(depth)")
                shared.formUnion(RawTables.subtree(tables.ops.memory, page: page, level: top - depth))
                let ownerPages = models[owner]
                let first = ours >> 12
                let count = block >> 12
                models[target] = models[target].filter { !($0.key >= first && $0.key - first < count) }
                for (key, value) in ownerPages where key >= theirs.va >> 12 && key - (theirs.va >> 12) < count {
                    models[target][first + (key - (theirs.va >> 12))] = value
                }
            }
            let context = Comment(rawValue: "layout \(layout) seed \(seed):\n  " + log.joined(separator: "\n  "))

            // The tables are what the models say (a check of the layout itself).
            var rootOf: [UInt64: Int] = [:]
            for (space, root) in roots.enumerated() {
                rootOf[tables.ops.physicalAddress(of: root)] = space
                let pages = RawTables.pages(of: [
                    SpaceWalk(root: 0, items: try tables.translation(ofSpace: root).map { .mapping($0) })
                ])[0]!
                #expect(pages == models[space], context)
            }
            // The walk, in a random order of primacy, with references expanded, is what the models say.
            var order = roots
            order.shuffle(using: &rng)
            let walk = try tables.walkSpaces(roots: order)
            let expanded = RawTables.pages(of: walk)
            for (root, pages) in expanded { #expect(pages == models[rootOf[root]!], context) }

            // Rebuilt in place: the same translations, the same sharing, no table copied.
            var rebuilt = PageTable(ops: ArrayTableOps<Mode>(physicalBase: 0x4000_0000), allowedLeafSizes: allowed)
            let built = try rebuilt.rebuild(walk)
            try expectSame(tables, roots, rebuilt, built, walk, context)
            #expect(rebuilt.ops.memory.liveTableCount == walk.map(\.tables.count).reduce(0, +), context)

            // Rebuilt into a movable store frozen after a random item: copies follow their parents up to the root.
            let itemCount = walk.map(\.items.count).reduce(0, +)
            let freezeAfter = itemCount == 0 ? 0 : Int(rng.next() % UInt64(itemCount))
            var movable = PageTable(
                ops: CopyOnFirstWriteTableOps<Mode>(physicalBase: 0x4000_0000), allowedLeafSizes: allowed)
            let builtMovable = try movable.rebuild(walk) { tables, item in
                if item == freezeAfter { tables.ops.freeze() }
            }
            try expectSame(tables, roots, movable, builtMovable, walk, context)
        }
    }

    /// Every space of `rebuilt` translates as in `original`, and walking the rebuilt spaces reports the same
    /// leaves and references (so the same tables are shared).
    func expectSame<Original: TableOps, Rebuilt: TableOps>(
        _ original: PageTable<Original>, _ roots: [Original.TableAddress], _ rebuilt: PageTable<Rebuilt>,
        _ built: [UInt64: Rebuilt.TableAddress], _ walk: [SpaceWalk], _ context: Comment
    ) throws {
        for root in roots {
            let new = try #require(built[original.ops.physicalAddress(of: root)], context)
            #expect(try original.translation(ofSpace: root) == rebuilt.translation(ofSpace: new), context)
        }
        let again = try rebuilt.walkSpaces(roots: walk.map { built[$0.root]! })
        #expect(RawTables.shape(of: again) == RawTables.shape(of: walk), context)
    }

    /// An address in a handful of blocks per level, so that random ranges and random links meet.
    static func randomAddress<Mode: PagingMode>(_: Mode.Type, _ rng: inout SeededGenerator) -> UInt64 {
        func pick(_ choices: [UInt64]) -> UInt64 { choices[Int(rng.next() % UInt64(choices.count))] }
        if Mode.architecture == .amd64 {
            let linear =
                pick([0, 1, 256, 511]) << 39 | pick([0, 1, 511]) << 30 | pick([0, 1, 2, 511]) << 21
                | (rng.next() % 512) << 12
            return Mode.canonical(linear)
        }
        return pick([0, 1, 2, 768, 1023]) << 22 | (rng.next() % 1024) << 12
    }

    /// A map (most often), unmap or protect of up to 4 or 8 MiB inside one 1 GiB (amd64) or the 4 GiB (i686)
    /// block, starting at a random address or a large-leaf boundary.
    static func randomStep<Mode: PagingMode>(_: Mode.Type, _ rng: inout SeededGenerator) -> Step {
        let large: UInt64 = Mode.architecture == .amd64 ? 1 << 21 : 1 << 22
        var va = randomAddress(Mode.self, &rng)
        if rng.next() % 2 == 0 { va &= ~(large - 1) }
        let blockEnd = Mode.architecture == .amd64 ? ((va >> 30) + 1) << 30 : 1 << 32
        var pages = 1 + rng.next() % (2 * large >> 12)
        pages = min(pages, (blockEnd &- va) >> 12)
        let length = pages << 12
        let kinds: [MappingKind] = [
            .readOnly, .readWrite, .readExecute, .readWriteExecute, .copyOnWrite(executable: false),
        ]
        let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
        let user = rng.next() % 3 == 0
        switch rng.next() % 8 {
        case 0: return .unmap(va, length)
        case 1: return .protect(va, length, kind, user)
        default:
            let frames: UInt64 = Mode.architecture == .amd64 ? 1 << 24 : 1 << 19
            var pa = (rng.next() % (frames >> 10)) << 22 + va % large
            if rng.next() % 3 == 0 { pa = (rng.next() % frames) << 12 }
            return .map(Mapping(physicalBase: pa, virtualBase: va, length: length, kind: kind, userAccessible: user))
        }
    }
}

