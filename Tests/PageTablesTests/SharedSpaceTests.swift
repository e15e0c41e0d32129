import PageTables
import PageTablesTestSupport
import Testing

private let gib: UInt64 = 1 << 30
private let upperHalf: UInt64 = 0xFFFF_8000_0000_0000

/// Walks `roots`, checks the walk against each space's own translation, rebuilds the spaces into a fresh
/// store and checks that every translation and every shared table came back: the round trip a snapshot
/// compactor makes.
@discardableResult
private func roundTrip<Mode: PagingMode>(
    _ tables: PageTable<ArrayTableOps<Mode>>, roots: [TableMemory<Mode>.Address],
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> (walk: [SpaceWalk], rebuilt: PageTable<ArrayTableOps<Mode>>, roots: [UInt64: TableMemory<Mode>.Address]) {
    let walk = try tables.walkSpaces(roots: roots)
    // The walk, references expanded, says what each space translates.
    let expanded = RawTables.pages(of: walk)
    for root in roots {
        let pages = RawTables.pages(of: [
            SpaceWalk(root: 0, items: try tables.translation(ofSpace: root).map { .mapping($0) })
        ])[0]!
        #expect(expanded[tables.ops.physicalAddress(of: root)] == pages, sourceLocation: sourceLocation)
    }
    var rebuilt = PageTable(
        ops: ArrayTableOps<Mode>(physicalBase: 0x4000_0000), allowedLeafSizes: tables.allowedLeafSizes,
        walkableLeafSizes: tables.walkableLeafSizes)
    let built = try rebuilt.rebuild(walk)
    for root in roots {
        let old = try tables.translation(ofSpace: root)
        let new = try rebuilt.translation(ofSpace: built[tables.ops.physicalAddress(of: root)]!)
        #expect(old == new, sourceLocation: sourceLocation)
    }
    // The same sharing: the rebuilt walk has the same references, and no table was copied.
    let again = try rebuilt.walkSpaces(roots: walk.map { built[$0.root]! })
    #expect(RawTables.shape(of: again) == RawTables.shape(of: walk), sourceLocation: sourceLocation)
    #expect(
        rebuilt.ops.memory.liveTableCount == walk.map(\.tables.count).reduce(0, +), sourceLocation: sourceLocation)
    return (walk, rebuilt, built)
}

private func references(_ space: SpaceWalk) -> [SpaceReference] {
    space.items.compactMap { if case .reference(let r) = $0 { r } else { nil } }
}

private func mappings(_ space: SpaceWalk) -> [Translation] {
    space.items.compactMap { if case .mapping(let m) = $0 { m } else { nil } }
}

@Suite("several address spaces: shared tables are walked once and rebuilt shared")
struct SharedSpaceTests {
    @Test("amd64: three processes share a kernel upper half through one PDPT")
    func kernelUpperHalf() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M, .size1G])
        let kernel = tables.ops.root
        // The kernel: two 2 MiB leaves and a 4 KiB page above them (PDPT page 1, PD page 2, PT page 3).
        try tables.map(Mapping(physicalBase: 0x20_0000, virtualBase: upperHalf, length: 0x40_0000, kind: .readWrite))
        try tables.map(
            Mapping(physicalBase: 0x1000, virtualBase: upperHalf + 0x40_0000, length: 0x1000, kind: .readOnly))
        try tables.map(
            Mapping(
                physicalBase: 0x80_0000, virtualBase: 0x40_0000, length: 0x2000, kind: .readWrite, userAccessible: true)
        )
        var processes: [TableMemory<AMD64>.Address] = []
        for (n, pages) in [(1, UInt64(1)), (2, 3)] {
            let root = try tables.ops.allocateTable()
            try tables.inSpace(root) {
                try $0.map(
                    Mapping(
                        physicalBase: 0x90_0000 + UInt64(n) << 20, virtualBase: 0x40_0000, length: pages << 12,
                        kind: .readExecute, userAccessible: true))
            }
            RawTables.link(
                &tables.ops.memory, owner: kernel.page, ownerVA: upperHalf, target: root.page, va: upperHalf, depth: 1)
            processes.append(root)
        }
        let (walk, rebuilt, built) = try roundTrip(tables, roots: [kernel] + processes)

        #expect(walk.map(\.root) == [0x10_0000] + processes.map { tables.ops.physicalAddress(of: $0) })
        #expect(walk[0].tables.count == 7)
        #expect(references(walk[0]).isEmpty)
        // Leaves that continue one another come back as one mapping per run.
        #expect(mappings(walk[0]).map(\.leafSize) == [.size4K, .size2M, .size4K])
        #expect(mappings(walk[0]).map(\.length) == [0x2000, 0x40_0000, 0x1000])
        let shared = SpaceReference(
            depth: 1, space: 0x10_0000, virtualAddress: upperHalf, ownerVirtualAddress: upperHalf, length: 1 << 39,
            tablePhysicalAddress: 0x10_1000)
        for (space, pages) in zip(walk[1...], [UInt64(1), 3]) {
            #expect(references(space) == [shared])
            #expect(mappings(space).map(\.length) == [pages << 12])
            #expect(space.tables.count == 4)  // root, PDPT, PD, PT of its own
        }
        // The rebuilt processes use the rebuilt kernel's PDPT itself.
        let kernelEntry = rebuilt.ops.memory.read(.init(page: built[0x10_0000]!.page, offset: 256 * 8))
        for root in processes {
            let page = built[tables.ops.physicalAddress(of: root)]!.page
            #expect(rebuilt.ops.memory.read(.init(page: page, offset: 256 * 8)) == kernelEntry)
        }
    }

    @Test("amd64: a page table, a page directory and a PDPT shared at other addresses")
    func everyDepth() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M, .size1G])
        let first = tables.ops.root
        try tables.map(.identity(0x20_0000, length: 0x3000, kind: .readWrite))  // a PT
        try tables.map(.identity(0x4000_0000, length: 0x20_0000, kind: .readExecute))  // a PD with a 2 MiB leaf
        try tables.map(.identity(0x4020_0000, length: 0x1000, kind: .readOnly))  // and a PT
        try tables.map(.identity(0x80_4000_0000, length: gib, kind: .readWrite))  // a PDPT with a 1 GiB leaf
        try tables.map(.identity(0x80_0000_1000, length: 0x1000, kind: .copyOnWrite(executable: false)))
        let second = try tables.ops.allocateTable()
        try tables.inSpace(second) { try $0.map(.identity(0x1000, length: 0x1000, kind: .readWrite)) }
        #expect(
            RawTables.link(
                &tables.ops.memory, owner: first.page, ownerVA: 0x20_0000, target: second.page, va: 0x60_0000, depth: 3)
                != nil)
        #expect(
            RawTables.link(
                &tables.ops.memory, owner: first.page, ownerVA: 0x4000_0000, target: second.page, va: 3 * gib, depth: 2)
                != nil)
        #expect(
            RawTables.link(
                &tables.ops.memory, owner: first.page, ownerVA: 0x80_0000_0000, target: second.page,
                va: 0x100_0000_0000, depth: 1)
                != nil)
        let (walk, _, _) = try roundTrip(tables, roots: [first, second])
        #expect(references(walk[0]).isEmpty)
        #expect(
            references(walk[1]).map { [$0.depth, Int($0.virtualAddress), Int($0.ownerVirtualAddress), Int($0.length)] }
                == [
                    [3, 0x60_0000, 0x20_0000, 0x20_0000],
                    [2, 0xC000_0000, 0x4000_0000, 0x4000_0000],
                    [1, 0x100_0000_0000, 0x80_0000_0000, 0x80_0000_0000],
                ])
        #expect(references(walk[1]).allSatisfy { $0.space == 0x10_0000 })
        #expect(mappings(walk[1]).map(\.virtualAddress) == [0x1000])
    }

    @Test("amd64: a table reached at two addresses of one space is a reference to the space itself")
    func sameSpaceTwice() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
        let root = tables.ops.root
        try tables.map(
            Mapping(
                physicalBase: 0x70_0000, virtualBase: 0x20_0000, length: 0x2000, kind: .readWrite, userAccessible: true)
        )
        RawTables.link(
            &tables.ops.memory, owner: root.page, ownerVA: 0x20_0000, target: root.page, va: 0x60_0000, depth: 3)
        let (walk, _, _) = try roundTrip(tables, roots: [root])
        #expect(walk.count == 1)
        #expect(
            references(walk[0]) == [
                SpaceReference(
                    depth: 3, space: 0x10_0000, virtualAddress: 0x60_0000, ownerVirtualAddress: 0x20_0000,
                    length: 0x20_0000, tablePhysicalAddress: 0x10_3000)
            ])
        #expect(mappings(walk[0]).map(\.virtualAddress) == [0x20_0000])
        #expect(try tables.lookup(0x60_1000)?.physicalAddress == 0x70_1000)
        #expect(try tables.lookup(0x60_1000)?.userAccessible == true)
    }

    @Test("amd64: ownership follows the order of the roots; a root listed twice is walked once")
    func orderOfPrimacy() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        let a = tables.ops.root
        let b = try tables.ops.allocateTable()
        let c = try tables.ops.allocateTable()
        try tables.map(.identity(0x1000, length: 0x1000, kind: .readWrite))
        try tables.inSpace(b) { try $0.map(.identity(0x40_1000, length: 0x1000, kind: .readWrite)) }
        // c uses a's PT at 0 and b's PT at 0x400000; b also uses a's PT, at 0x800000.
        for (owner, ownerVA, target, va): (TableMemory<AMD64>.Address, UInt64, TableMemory<AMD64>.Address, UInt64) in [
            (a, 0, c, 0), (b, 0x40_0000, c, 0x40_0000), (a, 0, b, 0x80_0000),
        ] {
            #expect(
                RawTables.link(
                    &tables.ops.memory, owner: owner.page, ownerVA: ownerVA, target: target.page, va: va, depth: 3)
                    != nil)
        }
        let pa = { tables.ops.physicalAddress(of: $0) }
        let (walk, _, _) = try roundTrip(tables, roots: [a, b, c, a])
        #expect(walk.map(\.root) == [pa(a), pa(b), pa(c)])
        #expect(references(walk[1]).map(\.space) == [pa(a)])
        #expect(references(walk[2]).map(\.space) == [pa(a), pa(b)])
        // Walked in the other order, c owns both tables and a, b refer to it.
        let reversed = try tables.walkSpaces(roots: [c, b, a])
        #expect(references(reversed[0]).isEmpty)
        #expect(references(reversed[1]).map(\.space) == [pa(c), pa(c)])
        #expect(references(reversed[2]).map(\.space) == [pa(c)])
    }

    @Test("i686: two spaces share the page tables above 3 GiB; a 4 MiB leaf is a mapping like any other")
    func i686Kernel() throws {
        var tables = PageTable(ops: ArrayTableOps<I686>(), allowedLeafSizes: [.size4M])
        let kernel = tables.ops.root
        try tables.map(Mapping(physicalBase: 0x40_0000, virtualBase: 0xC000_0000, length: 0x40_0000, kind: .readWrite))
        try tables.map(Mapping(physicalBase: 0x1000, virtualBase: 0xC040_0000, length: 0x3000, kind: .readOnly))
        try tables.map(Mapping(physicalBase: 0x5000, virtualBase: 0xC080_0000, length: 0x1000, kind: .readWrite))
        let process = try tables.ops.allocateTable()
        try tables.inSpace(process) {
            try $0.map(Mapping(physicalBase: 0x40_0000, virtualBase: 0xC000_0000, length: 0x40_0000, kind: .readWrite))
            try $0.map(
                Mapping(
                    physicalBase: 0x80_0000, virtualBase: 0x40_0000, length: 0x1000, kind: .readWrite,
                    userAccessible: true))
        }
        for va: UInt64 in [0xC040_0000, 0xC080_0000] {
            RawTables.link(&tables.ops.memory, owner: kernel.page, ownerVA: va, target: process.page, va: va, depth: 1)
        }
        // The same page table again, lower down.
        RawTables.link(
            &tables.ops.memory, owner: kernel.page, ownerVA: 0xC040_0000, target: process.page, va: 0x80_0000, depth: 1)
        let (walk, _, _) = try roundTrip(tables, roots: [kernel, process])
        #expect(
            references(walk[1]).map { [Int($0.virtualAddress), Int($0.ownerVirtualAddress), $0.depth, Int($0.length)] }
                == [
                    [0x80_0000, 0xC040_0000, 1, 0x40_0000], [0xC040_0000, 0xC040_0000, 1, 0x40_0000],
                    [0xC080_0000, 0xC080_0000, 1, 0x40_0000],
                ])
        #expect(mappings(walk[1]).map(\.leafSize) == [.size4K, .size4M])
        #expect(walk[1].tables.count == 2)
    }

    @Test("rebuilding into a movable store that freezes half-way keeps every translation and every share")
    func movableRebuild() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
        let kernel = tables.ops.root
        try tables.map(Mapping(physicalBase: 0x20_0000, virtualBase: upperHalf, length: 0x40_1000, kind: .readWrite))
        let process = try tables.ops.allocateTable()
        try tables.inSpace(process) { try $0.map(.identity(0x1000, length: 0x2000, kind: .readWrite)) }
        RawTables.link(
            &tables.ops.memory, owner: kernel.page, ownerVA: upperHalf, target: process.page, va: upperHalf, depth: 1)
        RawTables.link(
            &tables.ops.memory, owner: process.page, ownerVA: 0, target: process.page, va: 0x20_0000, depth: 3)
        let walk = try tables.walkSpaces(roots: [kernel, process])
        var rebuilt = PageTable(ops: CopyOnFirstWriteTableOps<AMD64>(), allowedLeafSizes: [.size2M])
        let built = try rebuilt.rebuild(walk) { tables, item in
            if item == 3 { tables.ops.freeze() }  // the process's first page: its tables are copied from here on
        }
        #expect(!rebuilt.ops.moves.isEmpty)
        for root in [kernel, process] {
            #expect(
                try tables.translation(ofSpace: root)
                    == rebuilt.translation(ofSpace: built[tables.ops.physicalAddress(of: root)]!))
        }
        let again = try rebuilt.walkSpaces(roots: walk.map { built[$0.root]! })
        #expect(RawTables.shape(of: again) == RawTables.shape(of: walk))
    }
}

@Suite("linkShared: the write side of sharing")
struct LinkSharedTests {
    @Test("links the owner's entry one level above the shared table, making the tables above with U/S")
    func exactEntries() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        let owner = tables.ops.root
        try tables.map(
            Mapping(
                physicalBase: 0x5000, virtualBase: 0x20_0000, length: 0x1000, kind: .readWrite, userAccessible: true))
        // Owner: PML4 page 0 -> PDPT 1 -> PD 2 -> PT 3 (PD[1]).
        let ownerEntry = tables.ops.memory.read(.init(page: 2, offset: 8))
        #expect(ownerEntry == 0x10_3000 | 0x27)
        let target = try tables.ops.allocateTable()  // page 4
        let reference = SpaceReference(
            depth: 3, space: 0x10_0000, virtualAddress: 0x60_0000, ownerVirtualAddress: 0x20_0000, length: 0x20_0000,
            tablePhysicalAddress: 0x10_3000)
        let linked = try tables.inSpace(target) { try $0.linkShared(reference, builtRoots: [0x10_0000: owner]) }
        #expect(linked)
        #expect(tables.ops.memory.read(.init(page: 4, offset: 0)) == 0x10_5000 | 0x27)  // PML4[0] -> new PDPT
        #expect(tables.ops.memory.read(.init(page: 5, offset: 0)) == 0x10_6000 | 0x27)  // PDPT[0] -> new PD
        #expect(tables.ops.memory.read(.init(page: 6, offset: 3 * 8)) == ownerEntry)  // PD[3] -> the owner's PT
        #expect(tables.ops.memory.liveTableCount == 7)
        let seen = try tables.inSpace(target) { try $0.lookup(0x60_0000) }
        #expect(seen?.physicalAddress == 0x5000)
        #expect(seen?.userAccessible == true)
        // Linking again changes nothing and frees nothing (the entry already names the shared table).
        try tables.inSpace(target) { _ = try $0.linkShared(reference, builtRoots: [0x10_0000: owner]) }
        #expect(tables.ops.memory.liveTableCount == 7)
        #expect(try tables.lookup(0x20_0000)?.physicalAddress == 0x5000)
    }

    @Test("a link replaces what was there and frees the tables only that entry referenced")
    func replaces() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        let owner = tables.ops.root
        try tables.map(.identity(0x20_0000, length: 0x1000, kind: .readWrite))
        let target = try tables.ops.allocateTable()
        try tables.inSpace(target) { try $0.map(.identity(0x60_0000, length: 0x1000, kind: .readOnly)) }
        #expect(tables.ops.memory.liveTableCount == 8)
        let reference = SpaceReference(
            depth: 3, space: 0x10_0000, virtualAddress: 0x60_0000, ownerVirtualAddress: 0x20_0000, length: 0x20_0000,
            tablePhysicalAddress: 0)
        try tables.inSpace(target) { _ = try $0.linkShared(reference, builtRoots: [0x10_0000: owner]) }
        #expect(tables.ops.memory.liveTableCount == 7)  // the target's old PT was freed
        #expect(try tables.inSpace(target) { try $0.lookup(0x60_0000)?.physicalAddress } == 0x20_0000)
    }

    @Test("nothing to link when the owner maps nothing there")
    func nothingToLink() throws {
        var tables = PageTable(ops: ArrayTableOps<I686>(), allowedLeafSizes: .smallPagesOnly)
        let owner = tables.ops.root
        let reference = SpaceReference(
            depth: 1, space: 0x10_0000, virtualAddress: 0x40_0000, ownerVirtualAddress: 0x40_0000, length: 0x40_0000,
            tablePhysicalAddress: 0)
        let target = try tables.ops.allocateTable()
        #expect(try tables.inSpace(target) { try $0.linkShared(reference, builtRoots: [0x10_0000: owner]) } == false)
        #expect(tables.ops.memory.liveTableCount == 2)
    }

    @Test("errors: an unknown space, and references that name no block")
    func errors() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: .all)
        let good = SpaceReference(
            depth: 2, space: 0x10_0000, virtualAddress: gib, ownerVirtualAddress: 0, length: gib,
            tablePhysicalAddress: 0)
        #expect(throws: PageTableError.unknownSpace(root: 0x10_0000)) {
            try tables.linkShared(good, builtRoots: [:])
        }
        var bad: [SpaceReference] = []
        for change: (inout SpaceReference) -> Void in [
            { $0.depth = 0 }, { $0.depth = 4 }, { $0.virtualAddress += 0x1000 }, { $0.ownerVirtualAddress = 0x20_0000 },
            { $0.length = 0x20_0000 }, { $0.virtualAddress = 0x8000_0000_0000 },
        ] {
            var reference = good
            change(&reference)
            bad.append(reference)
        }
        for reference in bad {
            #expect(throws: PageTableError.invalidReference(reference)) {
                try tables.linkShared(reference, builtRoots: [0x10_0000: tables.ops.root])
            }
        }
        #expect(tables.ops.memory.liveTableCount == 1)
    }

    @Test("a link into frozen tables copies the chain above it and replaces the root once")
    func movable() throws {
        var tables = PageTable(ops: CopyOnFirstWriteTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        try tables.map(.identity(0x1000, length: 0x1000, kind: .readWrite))  // pages 0..3
        tables.ops.freeze()
        let root = tables.ops.root
        let reference = SpaceReference(
            depth: 3, space: 0x10_0000, virtualAddress: 0x20_0000, ownerVirtualAddress: 0, length: 0x20_0000,
            tablePhysicalAddress: 0x10_3000)
        #expect(try tables.linkShared(reference, builtRoots: [0x10_0000: root]))
        // PD (2), PDPT (1) and PML4 (0) were copied; the PT (3) is now reached from two PD entries.
        #expect(tables.ops.moves.map(\.from) == [2, 1, 0])
        #expect(tables.ops.rootReplacements == 1)
        #expect(try tables.lookup(0x20_1000)?.physicalAddress == 0x1000)
        let walk = try tables.walkSpaces(roots: [tables.ops.root])
        #expect(references(walk[0]).map(\.tablePhysicalAddress) == [0x10_3000])
    }
}

@Suite("walks that stop early, and maps that keep leaf sizes")
struct VisitorTests {
    @Test("visitLeaves stops where the visitor says, in a page table or at a large leaf")
    func stops() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
        try tables.map(.identity(0x1000, length: 0x5000, kind: .readWrite))
        try tables.map(.identity(0x40_0000, length: 0x40_0000, kind: .readWrite))
        for budget in 1...9 {
            var seen: [UInt64] = []
            let decision = try tables.visitLeaves(virtualBase: 0, length: 1 << 47) { leaf in
                seen.append(leaf.virtualAddress)
                return seen.count < budget ? .continue : .stop
            }
            let all: [UInt64] = [0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x40_0000, 0x60_0000]
            #expect(seen == Array(all.prefix(budget)))
            #expect(decision == (budget <= all.count ? .stop : .continue))
        }
    }

    @Test("map with leafSizes writes no larger leaf than asked")
    func leafSizes() throws {
        #expect(AllowedLeafSizes(only: .size4K) == [])
        #expect(AllowedLeafSizes(only: .size1G) == .size1G)
        for (sizes, expected): (AllowedLeafSizes, [LeafSize]) in [
            ([], Array(repeating: .size4K, count: 1024)), ([.size2M], [.size2M, .size2M]),
            ([.size1G], Array(repeating: .size4K, count: 1024)),  // not allowed by the table
        ] {
            var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
            try tables.map(.identity(0x20_0000, length: 0x40_0000, kind: .readWrite), leafSizes: sizes)
            let leaves = try tables.translate(virtualBase: 0, length: gib).map(\.leafSize)
            #expect(leaves == expected)
        }
    }
}

@Suite("hostile tables seen from several spaces")
struct HostileSpaceTests {
    @Test("a root that references itself: each depth entered once, one leaf")
    func selfReference() throws {
        var ops = ArrayTableOps<AMD64>()
        ops.memory.write(.init(page: 0, offset: 0), 0x10_0000 | 0x23)
        let walk = try PageTable(ops: ops, allowedLeafSizes: .all).walkSpaces(roots: [ops.root])
        #expect(
            walk == [
                SpaceWalk(
                    root: 0x10_0000,
                    items: [
                        .mapping(
                            Translation(
                                virtualAddress: 0, physicalAddress: 0x10_0000, length: 0x1000, kind: .readWriteExecute,
                                userAccessible: false, leafSize: .size4K))
                    ], tables: [0x10_0000, 0x10_0000, 0x10_0000, 0x10_0000])
            ])
    }

    @Test("a root referencing itself 256 times: references instead of 256^3 tables, and the table limit")
    func selfReferenceEverywhere() throws {
        var ops = ArrayTableOps<AMD64>()
        for index in 0..<256 { ops.memory.write(.init(page: 0, offset: index * 8), 0x10_0000 | 0x23) }
        let tables = PageTable(ops: ops, allowedLeafSizes: .all)
        let walk = try tables.walkSpaces(roots: [ops.root])
        #expect(references(walk[0]).count == 3 * 255)
        #expect(mappings(walk[0]).count == 256)
        #expect(Set(references(walk[0]).map(\.depth)) == [1, 2, 3])
        #expect(throws: PageTableError.walkTooLong(tables: 2)) {
            try tables.walkSpaces(roots: [ops.root], maximumTables: 2)
        }
    }

    @Test("two roots that reference each other: bounded, each table entered once per depth")
    func cycleBetweenSpaces() throws {
        var ops = ArrayTableOps<AMD64>()
        let b = try ops.allocateTable()
        ops.memory.write(.init(page: 0, offset: 0), 0x10_1000 | 0x23)  // A[0] -> B
        ops.memory.write(.init(page: 1, offset: 0), 0x10_0000 | 0x23)  // B[0] -> A
        let walk = try PageTable(ops: ops, allowedLeafSizes: .all).walkSpaces(roots: [ops.root, b])
        #expect(
            walk.map(\.tables) == [
                [0x10_0000, 0x10_1000, 0x10_0000, 0x10_1000], [0x10_1000, 0x10_0000, 0x10_1000, 0x10_0000],
            ])
        #expect(mappings(walk[0]).map(\.physicalAddress) == [0x10_0000])
        #expect(mappings(walk[1]).map(\.physicalAddress) == [0x10_1000])
    }

    @Test("an entry outside table memory in a later space is a typed error")
    func outside() throws {
        var ops = ArrayTableOps<I686>()
        let b = try ops.allocateTable()
        ops.memory.write(.init(page: 1, offset: 4 * 3), 0xDEAD_B000 | 0x23)
        #expect(throws: PageTableError.entryOutsideTableMemory(virtualAddress: 0xC0_0000, level: 1, entry: 0xDEAD_B023))
        {
            try PageTable(ops: ops, allowedLeafSizes: .all).walkSpaces(roots: [ops.root, b])
        }
        // And linking to an owner whose tables point outside memory.
        var tables = PageTable(ops: ops, allowedLeafSizes: .all)
        let reference = SpaceReference(
            depth: 1, space: 0x10_1000, virtualAddress: 0, ownerVirtualAddress: 0xC0_0000, length: 0x40_0000,
            tablePhysicalAddress: 0)
        let linked = try tables.linkShared(reference, builtRoots: [0x10_1000: b])
        #expect(linked)  // the owner's entry is copied as it is: the link itself reads nothing below it
    }

    @Test("random garbage in several roots: every multi-space walk ends", arguments: Architecture.allCases)
    func garbage(_ architecture: Architecture) throws {
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<150 {
            switch architecture {
            case .amd64: try walkGarbage(AMD64.self, &rng)
            case .i686: try walkGarbage(I686.self, &rng)
            }
        }
    }

    func walkGarbage<Mode: PagingMode>(_: Mode.Type, _ rng: inout SeededGenerator) throws {
        var ops = ArrayTableOps<Mode>()
        let pageCount = 8
        ops.memory.grow(to: pageCount)
        for page in 0..<pageCount {
            let entries = (0..<Mode.entriesPerTable).map { _ -> UInt64 in
                var e = rng.next()
                switch e % 4 {
                case 0: e = 0
                case 1: e = (0x10_0000 + (e >> 8) % UInt64(pageCount + 2) << 12) | (e & 0xFFF)
                default: break
                }
                return Mode.entryByteCount == 4 ? e & 0xFFFF_FFFF : e
            }
            ops.memory.setPage(page, entries)
        }
        var roots: [TableMemory<Mode>.Address] = []
        for _ in 0..<3 { roots.append(TableMemory<Mode>.Address(page: Int(rng.next() % UInt64(pageCount)))) }
        let tables = PageTable(ops: ops, allowedLeafSizes: .all)
        do throws(PageTableError) {
            let walk = try tables.walkSpaces(roots: roots)
            // Each (table, depth) is entered at most once in the whole walk.
            let entered = walk.map { $0.tables.count - 1 }.reduce(0, +)
            #expect(entered <= pageCount * (Mode.levelCount - 1))
        } catch .entryOutsideTableMemory, .malformedEntry {
            // Reported, as it should be.
        }
    }
}
