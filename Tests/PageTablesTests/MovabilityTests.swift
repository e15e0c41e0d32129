import PageTables
import PageTablesTestSupport
import Testing

@Suite("movable tables: the ancestor chain is rewritten at every depth")
struct MovabilityTests {
    @Test("amd64: a write into a frozen PT moves PT, PD, PDPT and PML4, and replaces the root once")
    func amd64Chain() throws {
        var tables = PageTable(ops: CopyOnFirstWriteTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        try tables.map(.identity(0x1000, length: 0x1000, kind: .readWrite))
        let before = tables.ops.memory.pages
        tables.ops.freeze()
        try tables.map(.identity(0x2000, length: 0x1000, kind: .readOnly))
        // PT (page 3), then its parent PD (2), PDPT (1), and the PML4 (0) were each copied once, in that order.
        #expect(tables.ops.moves.map(\.from) == [3, 2, 1, 0])
        #expect(tables.ops.moves.map(\.to) == [4, 5, 6, 7])
        #expect(tables.ops.rootReplacements == 1)
        #expect(tables.rootPhysicalAddress == 0x10_7000)
        // Each copy's entry names the next copy down.
        #expect(tables.ops.memory.read(.init(page: 7, offset: 0)) == 0x10_6023)
        #expect(tables.ops.memory.read(.init(page: 6, offset: 0)) == 0x10_5023)
        #expect(tables.ops.memory.read(.init(page: 5, offset: 0)) == 0x10_4023)
        #expect(tables.ops.memory.read(.init(page: 4, offset: 16)) == UInt64(0x2061) | 1 << 63)
        // The snapshot is untouched and still translates to the old space.
        #expect(Array(tables.ops.memory.pages[0..<4]) == before)
        let old = PageTable(ops: tables.ops.viewing(root: .init(page: 0)), allowedLeafSizes: .smallPagesOnly)
        #expect(try old.translate(virtualBase: 0, length: 0x10000).map(\.virtualAddress) == [0x1000])
        #expect(try tables.translate(virtualBase: 0, length: 0x10000).map(\.virtualAddress) == [0x1000, 0x2000])
    }

    @Test("amd64: a new table under a frozen PD moves only the PD and its ancestors")
    func amd64NewBranch() throws {
        var tables = PageTable(ops: CopyOnFirstWriteTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        try tables.map(.identity(0x1000, length: 0x1000, kind: .readWrite))
        tables.ops.freeze()
        try tables.map(.identity(0x20_0000, length: 0x1000, kind: .readWrite))
        // New PT is page 4 (fresh, never moves); PD (2) -> 5, PDPT (1) -> 6, PML4 (0) -> 7.
        #expect(tables.ops.moves.map(\.from) == [2, 1, 0])
        #expect(tables.ops.rootReplacements == 1)
        #expect(try tables.lookup(0x20_0000)?.physicalAddress == 0x20_0000)
    }

    @Test("i686: a protect inside a frozen 4 MiB leaf splits into a fresh PT and moves the directory")
    func i686Chain() throws {
        var tables = PageTable(ops: CopyOnFirstWriteTableOps<I686>(), allowedLeafSizes: [.size4M])
        try tables.map(.identity(0x40_0000, length: 0x40_0000, kind: .readWrite))
        tables.ops.freeze()
        try tables.protect(virtualBase: 0x40_0000, length: 0x1000, kind: .copyOnWrite(executable: false))
        #expect(tables.ops.moves.map(\.from) == [0])
        #expect(tables.ops.rootReplacements == 1)
        #expect(tables.ops.memory.read(.init(page: 0, offset: 4)) == 0x40_00E3)  // the snapshot keeps the leaf
        let runs = try tables.coalescedTranslate(virtualBase: 0, length: 1 << 32)
        #expect(runs.map(\.kind) == [.copyOnWrite(executable: true), .readWriteExecute])
        #expect(runs.map(\.length) == [0x1000, 0x3F_F000])
    }

    @Test("unmap through a frozen chain: the emptied copy is freed, the snapshot kept")
    func unmapFrozen() throws {
        var tables = PageTable(ops: CopyOnFirstWriteTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        try tables.map(.identity(0x1000, length: 0x1000, kind: .readWrite))
        tables.ops.freeze()
        try tables.unmap(virtualBase: 0x1000, length: 0x1000)
        #expect(try tables.translate(virtualBase: 0, length: 1 << 47).isEmpty)
        #expect(tables.ops.memory.read(.init(page: 3, offset: 8)) == UInt64(0x1063) | 1 << 63)
        #expect(tables.ops.rootReplacements == 1)
        // Only the new root is live beside the four snapshot pages.
        #expect(tables.ops.memory.liveTableCount == 5)
    }
}

@Suite("hostile tables")
struct HostileTableTests {
    @Test("an entry pointing outside table memory is an error, not a crash")
    func outside() throws {
        var ops = ArrayTableOps<AMD64>()
        ops.memory.write(.init(page: 0, offset: 0), 0xDEAD_B000 | 0x23)
        let tables = PageTable(ops: ops, allowedLeafSizes: .all)
        #expect(throws: PageTableError.entryOutsideTableMemory(virtualAddress: 0, level: 3, entry: 0xDEAD_B023)) {
            try tables.translate(virtualBase: 0, length: 1 << 30)
        }
    }

    @Test("PS in a PML4 entry is malformed")
    func psInRoot() throws {
        var ops = ArrayTableOps<AMD64>()
        ops.memory.write(.init(page: 0, offset: 8), 0x80 | 0x23)
        let tables = PageTable(ops: ops, allowedLeafSizes: .all)
        #expect(throws: PageTableError.malformedEntry(virtualAddress: 0x80_0000_0000, level: 3, entry: 0xA3)) {
            try tables.translate(virtualBase: 0, length: 1 << 47)
        }
    }

    @Test("PS is read as the CPU reads it: a 1 GiB leaf the CPU cannot walk is malformed on amd64")
    func unwalkableGigabyteLeaf() throws {
        var ops = ArrayTableOps<AMD64>()
        var tables = PageTable(ops: ops, allowedLeafSizes: [.size2M, .size1G])
        try tables.map(.identity(0x4000_0000, length: 0x4000_0000, kind: .readWrite))
        ops = tables.ops
        #expect(try tables.lookup(0x4000_0000)?.leafSize == .size1G)
        let noPage1GB = PageTable(ops: ops, allowedLeafSizes: [.size2M])
        #expect(
            throws: PageTableError.malformedEntry(virtualAddress: 0x4000_0000, level: 2, entry: 0x8000_0000_4000_00E3)
        ) {
            try noPage1GB.lookup(0x4000_0000)
        }
    }

    @Test("without CR4.PSE an i686 directory entry with PS references a table")
    func pageSizeBitIgnoredWithoutPSE() throws {
        var ops = ArrayTableOps<I686>()
        var tables = PageTable(ops: ops, allowedLeafSizes: [.size4M])
        try tables.map(.identity(0x40_0000, length: 0x40_0000, kind: .readWrite))  // PDE 1 = 4 MiB leaf
        ops = tables.ops
        // The same entry read with PSE off points at "the table" at 0x400000, outside table memory.
        let withoutPSE = PageTable(ops: ops, allowedLeafSizes: .smallPagesOnly)
        #expect(throws: PageTableError.entryOutsideTableMemory(virtualAddress: 0x40_0000, level: 1, entry: 0x40_00E3)) {
            try withoutPSE.lookup(0x40_0000)
        }
    }

    @Test("a self-referencing root is walked in bounded time")
    func selfReference() throws {
        var ops = ArrayTableOps<AMD64>()
        ops.memory.write(.init(page: 0, offset: 0), 0x10_0000 | 0x23)  // PML4[0] -> PML4
        let tables = PageTable(ops: ops, allowedLeafSizes: .all)
        // PML4 read as PDPT, PD and PT: only index 0 is present at each level, so exactly one leaf: the root page.
        let leaves = try tables.translate(virtualBase: 0, length: 1 << 47)
        #expect(
            leaves == [
                Translation(
                    virtualAddress: 0, physicalAddress: 0x10_0000, length: 0x1000, kind: .readWriteExecute,
                    userAccessible: false, leafSize: .size4K)
            ])
    }

    @Test("tables that reference themselves many times over are cut off by the table limit")
    func selfReferenceEverywhere() throws {
        var ops = ArrayTableOps<AMD64>()
        for index in 0..<256 { ops.memory.write(.init(page: 0, offset: index * 8), 0x10_0000 | 0x23) }
        let tables = PageTable(ops: ops, allowedLeafSizes: .all)
        // 256 x 256 x 256 tables would be entered; a limit of 64 stops the walk at once instead.
        #expect(throws: PageTableError.walkTooLong(tables: 64)) {
            try tables.forEachLeaf(virtualBase: 0, length: 1 << 47, maximumTables: 64) { _ in }
        }
    }

    @Test(
        "random garbage tables: every walk ends in a result or an error",
        arguments: [AMD64.architecture, I686.architecture])
    func garbage(_ architecture: Architecture) throws {
        var rng = SeededGenerator(seed: 42)
        for _ in 0..<300 {
            if architecture == .amd64 {
                try walkGarbage(ArrayTableOps<AMD64>.self, &rng)
            } else {
                try walkGarbage(ArrayTableOps<I686>.self, &rng)
            }
        }
    }

    func walkGarbage<Mode: PagingMode>(_: ArrayTableOps<Mode>.Type, _ rng: inout SeededGenerator) throws {
        var ops = ArrayTableOps<Mode>()
        let pageCount = 8
        ops.memory.grow(to: pageCount)
        for page in 0..<pageCount {
            let entries = (0..<Mode.entriesPerTable).map { _ -> UInt64 in
                var e = rng.next()
                switch e % 4 {
                case 0: e = 0  // absent
                case 1: e = (0x10_0000 + (e >> 8) % UInt64(pageCount + 2) << 12) | (e & 0xFFF)  // in memory, or just past it
                default: break  // anything at all
                }
                return Mode.entryByteCount == 4 ? e & 0xFFFF_FFFF : e
            }
            ops.memory.setPage(page, entries)
        }
        let tables = PageTable(ops: ops, allowedLeafSizes: .all)
        var leaves = 0
        do {
            try tables.forEachLeaf(virtualBase: 0, length: 1 << 26) { _ in leaves += 1 }
        } catch .entryOutsideTableMemory, .malformedEntry {
            // Reported, as it should be.
        }
        #expect(leaves <= (1 << 26) >> 12)
    }
}
