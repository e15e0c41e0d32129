import PageTables
import PageTablesTestSupport
import Testing

// Expected values are derived by hand from the Intel SDM Vol. 3A tables 4-4..4-6 (32-bit) and 4-14..4-20
// (4-level). The doubles put page N of table memory at physical 0x100000 + N * 0x1000 and hand out pages
// in allocation order, so the physical address of every table is predictable.

private let tableFlags: UInt64 = 0x23  // P | R/W | A
private let nx: UInt64 = 1 << 63
private let rwLeaf: UInt64 = 0x63  // P | R/W | A | D
private let roLeaf: UInt64 = 0x61  // P | A | D
private let pageSize: UInt64 = 0x80  // PS

private func entry<M>(_ ops: ArrayTableOps<M>, page: Int, index: Int) -> UInt64 {
    ops.memory.read(.init(page: page, offset: index * M.entryByteCount))
}

@Suite("amd64 entries")
struct AMD64EntryTests {
    @Test("one 4 KiB page builds PML4 -> PDPT -> PD -> PT with exact bits")
    func singlePage() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        try tables.map(Mapping(physicalBase: 0x20_0000, virtualBase: 0x40_0000, length: 0x1000, kind: .readWrite))
        #expect(tables.rootPhysicalAddress == 0x10_0000)
        #expect(entry(tables.ops, page: 0, index: 0) == 0x10_1000 | tableFlags)  // PML4[0] -> PDPT
        #expect(entry(tables.ops, page: 1, index: 0) == 0x10_2000 | tableFlags)  // PDPT[0] -> PD
        #expect(entry(tables.ops, page: 2, index: 2) == 0x10_3000 | tableFlags)  // PD[2] (0x400000 >> 21) -> PT
        #expect(entry(tables.ops, page: 3, index: 0) == 0x20_0000 | rwLeaf | nx)  // PT[0]
        #expect(tables.ops.memory.liveTableCount == 4)
        // Nothing else was written.
        let written = tables.ops.memory.pages.joined().filter { $0 != 0 }.count
        #expect(written == 4)
    }

    @Test("kinds encode as R/W, NX and the copy-on-write bit 9; U/S reaches the intermediates")
    func kinds() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        try tables.map(.identity(0x1000, length: 0x1000, kind: .readOnly))
        try tables.map(.identity(0x2000, length: 0x1000, kind: .readExecute))
        try tables.map(.identity(0x3000, length: 0x1000, kind: .readWriteExecute))
        try tables.map(.identity(0x4000, length: 0x1000, kind: .copyOnWrite(executable: false)))
        try tables.map(.identity(0x5000, length: 0x1000, kind: .copyOnWrite(executable: true), userAccessible: true))
        #expect(entry(tables.ops, page: 3, index: 1) == 0x1000 | roLeaf | nx)
        #expect(entry(tables.ops, page: 3, index: 2) == 0x2000 | roLeaf)
        #expect(entry(tables.ops, page: 3, index: 3) == 0x3000 | rwLeaf)
        #expect(entry(tables.ops, page: 3, index: 4) == 0x4000 | roLeaf | 0x200 | nx)
        #expect(entry(tables.ops, page: 3, index: 5) == 0x5000 | roLeaf | 0x200 | 0x4)
        #expect(entry(tables.ops, page: 0, index: 0) == 0x10_1000 | tableFlags | 0x4)
        #expect(entry(tables.ops, page: 2, index: 0) == 0x10_3000 | tableFlags | 0x4)
        let kinds = try tables.translate(virtualBase: 0, length: 0x6000).map(\.kind)
        #expect(
            kinds == [
                .readOnly, .readExecute, .readWriteExecute, .copyOnWrite(executable: false),
                .copyOnWrite(executable: true),
            ])
    }

    @Test("a range crossing every level boundary allocates exactly the tables it needs")
    func crossingEveryLevel() throws {
        // From the last page below 512 GiB to the first page above it: PML4[0] and PML4[1], every level split.
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        let va: UInt64 = 0x80_0000_0000 - 0x1000
        try tables.map(Mapping(physicalBase: 0x7000, virtualBase: va, length: 0x2000, kind: .readWrite))
        // Pages 1..3: PDPT, PD, PT under PML4[0]; pages 4..6 under PML4[1].
        #expect(entry(tables.ops, page: 0, index: 0) == 0x10_1000 | tableFlags)
        #expect(entry(tables.ops, page: 1, index: 511) == 0x10_2000 | tableFlags)
        #expect(entry(tables.ops, page: 2, index: 511) == 0x10_3000 | tableFlags)
        #expect(entry(tables.ops, page: 3, index: 511) == 0x7000 | rwLeaf | nx)
        #expect(entry(tables.ops, page: 0, index: 1) == 0x10_4000 | tableFlags)
        #expect(entry(tables.ops, page: 4, index: 0) == 0x10_5000 | tableFlags)
        #expect(entry(tables.ops, page: 5, index: 0) == 0x10_6000 | tableFlags)
        #expect(entry(tables.ops, page: 6, index: 0) == 0x8000 | rwLeaf | nx)
        #expect(tables.ops.memory.liveTableCount == 7)
    }

    @Test("2 MiB leaves where aligned, 4 KiB at an unaligned start and tail")
    func largeLeavesWithUnalignedEdges() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
        try tables.map(.identity(0x1F_F000, length: 0x40_2000, kind: .readWrite))
        #expect(entry(tables.ops, page: 2, index: 0) == 0x10_3000 | tableFlags)  // PD[0] -> PT for 0x1FF000
        #expect(entry(tables.ops, page: 3, index: 511) == 0x1F_F000 | rwLeaf | nx)
        #expect(entry(tables.ops, page: 2, index: 1) == 0x20_0000 | rwLeaf | pageSize | nx)
        #expect(entry(tables.ops, page: 2, index: 2) == 0x40_0000 | rwLeaf | pageSize | nx)
        #expect(entry(tables.ops, page: 2, index: 3) == 0x10_4000 | tableFlags)  // PD[3] -> PT for 0x600000
        #expect(entry(tables.ops, page: 4, index: 0) == 0x60_0000 | rwLeaf | nx)
        let leaves = try tables.translate(virtualBase: 0, length: 0x100_0000)
        #expect(leaves.map(\.leafSize) == [.size4K, .size2M, .size2M, .size4K])
        #expect(leaves.map(\.virtualAddress) == [0x1F_F000, 0x20_0000, 0x40_0000, 0x60_0000])
    }

    @Test("a virtual range aligned for 2 MiB but a physical one that is not gets 4 KiB leaves")
    func misalignedPhysicalPreventsLargeLeaves() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M, .size1G])
        try tables.map(Mapping(physicalBase: 0x20_1000, virtualBase: 0x20_0000, length: 0x20_0000, kind: .readWrite))
        let leaves = try tables.translate(virtualBase: 0x20_0000, length: 0x20_0000)
        #expect(leaves.count == 512)
        #expect(leaves.allSatisfy { $0.leafSize == .size4K })
    }

    @Test("1 GiB leaf in the PDPT only when allowed")
    func oneGigabyteLeaf() throws {
        var big = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M, .size1G])
        try big.map(.identity(0x4000_0000, length: 0x4000_0000, kind: .readWrite))
        #expect(entry(big.ops, page: 1, index: 1) == 0x4000_0000 | rwLeaf | pageSize | nx)
        #expect(big.ops.memory.liveTableCount == 2)
        var small = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
        try small.map(.identity(0x4000_0000, length: 0x4000_0000, kind: .readWrite))
        #expect(entry(small.ops, page: 2, index: 0) == 0x4000_0000 | rwLeaf | pageSize | nx)
        #expect(entry(small.ops, page: 2, index: 511) == 0x7FE0_0000 | rwLeaf | pageSize | nx)
        #expect(small.ops.memory.liveTableCount == 3)
        var none = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        try none.map(.identity(0x4000_0000, length: 0x4000_0000, kind: .readWrite))
        #expect(none.ops.memory.liveTableCount == 3 + 512)
    }

    @Test("protecting one page of a 2 MiB leaf splits it and keeps the other 511 pages")
    func splitTwoMegabyteLeaf() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
        try tables.map(
            Mapping(physicalBase: 0x60_0000, virtualBase: 0x20_0000, length: 0x20_0000, kind: .readWriteExecute))
        try tables.protect(virtualBase: 0x20_1000, length: 0x1000, kind: .readOnly)
        #expect(entry(tables.ops, page: 2, index: 1) == 0x10_3000 | tableFlags)
        #expect(entry(tables.ops, page: 3, index: 0) == 0x60_0000 | rwLeaf)
        #expect(entry(tables.ops, page: 3, index: 1) == 0x60_1000 | roLeaf | nx)
        #expect(entry(tables.ops, page: 3, index: 2) == 0x60_2000 | rwLeaf)
        #expect(entry(tables.ops, page: 3, index: 511) == 0x7F_F000 | rwLeaf)
    }

    @Test("splitting a user-accessible 2 MiB leaf keeps U/S on the directory entry for the pages left")
    func splitKeepsUserBit() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
        try tables.map(
            Mapping(
                physicalBase: 0x20_0000, virtualBase: 0x20_0000, length: 0x20_0000, kind: .readWrite,
                userAccessible: true))
        try tables.protect(virtualBase: 0x20_0000, length: 0x1000, kind: .readOnly, userAccessible: false)
        #expect(entry(tables.ops, page: 2, index: 1) == 0x10_3000 | tableFlags | 0x4)  // PD[1] -> PT, U/S kept
        #expect(entry(tables.ops, page: 3, index: 0) == 0x20_0000 | roLeaf | nx)
        #expect(entry(tables.ops, page: 3, index: 1) == 0x20_1000 | rwLeaf | nx | 0x4)
        #expect(try tables.lookup(0x20_1000)?.userAccessible == true)
        #expect(try tables.lookup(0x20_0000)?.userAccessible == false)
    }

    @Test("translate reports what the CPU enforces: R/W and U/S of every level ANDed, NX ORed")
    func inheritedPermissions() throws {
        var ops = ArrayTableOps<AMD64>()
        var tables = PageTable(ops: ops, allowedLeafSizes: [.size2M])
        try tables.map(
            Mapping(
                physicalBase: 0x20_0000, virtualBase: 0x20_0000, length: 0x1000, kind: .readWriteExecute,
                userAccessible: true))
        try tables.map(
            Mapping(
                physicalBase: 0x40_0000, virtualBase: 0x40_0000, length: 0x20_0000, kind: .readWriteExecute,
                userAccessible: true))
        ops = tables.ops
        // A guest (or anyone) clears R/W and U/S and sets NX in the PDPT entry above both.
        let pdpt = ops.memory.read(.init(page: 1, offset: 0))
        ops.memory.write(.init(page: 1, offset: 0), (pdpt & ~0x6) | 1 << 63)
        let edited = PageTable(ops: ops, allowedLeafSizes: [.size2M])
        for va: UInt64 in [0x20_0000, 0x40_0000] {
            let t = try #require(try edited.lookup(va))
            #expect(t.kind == .readOnly)
            #expect(t.userAccessible == false)
        }
    }

    @Test("unmapping one page of a 1 GiB leaf splits it into 511 2 MiB leaves and 511 4 KiB leaves")
    func splitOneGigabyteLeaf() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M, .size1G])
        try tables.map(.identity(0x4000_0000, length: 0x4000_0000, kind: .readWrite))
        try tables.unmap(virtualBase: 0x4020_0000, length: 0x1000)
        #expect(entry(tables.ops, page: 1, index: 1) == 0x10_2000 | tableFlags)  // PDPT[1] -> new PD
        #expect(entry(tables.ops, page: 2, index: 0) == 0x4000_0000 | rwLeaf | pageSize | nx)
        #expect(entry(tables.ops, page: 2, index: 1) == 0x10_3000 | tableFlags)  // PD[1] -> new PT
        #expect(entry(tables.ops, page: 3, index: 0) == 0)
        #expect(entry(tables.ops, page: 3, index: 1) == 0x4020_1000 | rwLeaf | nx)
        #expect(entry(tables.ops, page: 2, index: 511) == 0x7FE0_0000 | rwLeaf | pageSize | nx)
        let runs = try tables.coalescedTranslate(virtualBase: 0x4000_0000, length: 0x4000_0000)
        #expect(runs.map(\.leafSize) == [.size2M, .size4K, .size2M])
        #expect(runs.map(\.length) == [0x20_0000, 0x1F_F000, 0x3FC0_0000])
    }

    @Test("the last page of each canonical half maps without overflow and translates back sign-extended")
    func lastPages() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: .smallPagesOnly)
        try tables.map(
            Mapping(physicalBase: 0x5000, virtualBase: 0xFFFF_FFFF_FFFF_F000, length: 0x1000, kind: .readWrite))
        try tables.map(Mapping(physicalBase: 0x6000, virtualBase: 0x7FFF_FFFF_F000, length: 0x1000, kind: .readOnly))
        #expect(entry(tables.ops, page: 0, index: 511) == 0x10_1000 | tableFlags)
        #expect(entry(tables.ops, page: 1, index: 511) == 0x10_2000 | tableFlags)
        #expect(entry(tables.ops, page: 2, index: 511) == 0x10_3000 | tableFlags)
        #expect(entry(tables.ops, page: 3, index: 511) == 0x5000 | rwLeaf | nx)
        #expect(entry(tables.ops, page: 0, index: 255) == 0x10_4000 | tableFlags)
        let top = try #require(try tables.lookup(0xFFFF_FFFF_FFFF_FABC))
        #expect(top.physicalAddress == 0x5ABC)
        #expect(top.length == 0x544)
        let all = try PageTable<ArrayTableOps<AMD64>>.virtualSpace.flatMap {
            try tables.translate(virtualBase: $0.base, length: $0.length)
        }
        #expect(all.map(\.virtualAddress) == [0x7FFF_FFFF_F000, 0xFFFF_FFFF_FFFF_F000])
    }

    @Test("upper-half kernel addresses such as 0xFFFF_8000_0000_0000")
    func upperHalf() throws {
        var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
        try tables.map(
            Mapping(physicalBase: 0, virtualBase: 0xFFFF_8000_0000_0000, length: 0x40_0000, kind: .readWrite))
        #expect(entry(tables.ops, page: 0, index: 256) == 0x10_1000 | tableFlags)
        let leaves = try tables.translate(virtualBase: 0xFFFF_8000_0000_0000, length: 0x40_0000)
        #expect(leaves.map(\.virtualAddress) == [0xFFFF_8000_0000_0000, 0xFFFF_8000_0020_0000])
        #expect(try tables.lookup(0xFFFF_8000_0030_0010)?.physicalAddress == 0x30_0010)
    }
}

@Suite("i686 entries")
struct I686EntryTests {
    @Test("one 4 KiB page above 3 GiB: PDE 768 -> PT, 4-byte entries, no NX")
    func singlePage() throws {
        var tables = PageTable(ops: ArrayTableOps<I686>(), allowedLeafSizes: .smallPagesOnly)
        try tables.map(Mapping(physicalBase: 0x1000, virtualBase: 0xC000_0000, length: 0x1000, kind: .readOnly))
        #expect(entry(tables.ops, page: 0, index: 768) == 0x10_1000 | tableFlags)
        #expect(entry(tables.ops, page: 1, index: 0) == 0x1000 | roLeaf)
        #expect(tables.requiresPageSizeExtension == false)
        // No NX on i686: a page mapped non-executable reads back executable, as the CPU treats it.
        #expect(try tables.lookup(0xC000_0000)?.kind == .readExecute)
    }

    @Test("4 MiB leaves need PSE, split back into 1,024 pages")
    func fourMegabyteLeaf() throws {
        var tables = PageTable(ops: ArrayTableOps<I686>(), allowedLeafSizes: [.size4M])
        #expect(tables.requiresPageSizeExtension)
        try tables.map(Mapping(physicalBase: 0x80_0000, virtualBase: 0x40_0000, length: 0x80_0000, kind: .readWrite))
        #expect(entry(tables.ops, page: 0, index: 1) == 0x80_0000 | rwLeaf | pageSize)
        #expect(entry(tables.ops, page: 0, index: 2) == 0xC0_0000 | rwLeaf | pageSize)
        try tables.protect(virtualBase: 0x7F_F000, length: 0x1000, kind: .copyOnWrite(executable: true))
        #expect(entry(tables.ops, page: 0, index: 1) == 0x10_1000 | tableFlags)
        #expect(entry(tables.ops, page: 1, index: 0) == 0x80_0000 | rwLeaf)
        #expect(entry(tables.ops, page: 1, index: 1022) == 0xBF_E000 | rwLeaf)
        #expect(entry(tables.ops, page: 1, index: 1023) == 0xBF_F000 | roLeaf | 0x200)
    }

    @Test("the last page of the 4 GiB space")
    func lastPage() throws {
        var tables = PageTable(ops: ArrayTableOps<I686>(), allowedLeafSizes: [.size4M])
        try tables.map(Mapping(physicalBase: 0xFFFF_F000, virtualBase: 0xFFFF_F000, length: 0x1000, kind: .readWrite))
        #expect(entry(tables.ops, page: 0, index: 1023) == 0x10_1000 | tableFlags)
        #expect(entry(tables.ops, page: 1, index: 1023) == 0xFFFF_F000 | rwLeaf)
        #expect(try tables.translate(virtualBase: 0, length: 1 << 32).map(\.virtualAddress) == [0xFFFF_F000])
    }
}

@Suite("errors")
struct ErrorTests {
    typealias A = PageTable<ArrayTableOps<AMD64>>
    typealias I = PageTable<ArrayTableOps<I686>>

    @Test("misaligned base, physical address or length")
    func misaligned() {
        var t = A(ops: .init(), allowedLeafSizes: .all)
        #expect(throws: PageTableError.misaligned(.virtualAddress, 0x1001)) {
            try t.map(.identity(0x1001, length: 0x1000, kind: .readOnly))
        }
        #expect(throws: PageTableError.misaligned(.length, 0x10)) {
            try t.map(.identity(0x1000, length: 0x10, kind: .readOnly))
        }
        #expect(throws: PageTableError.misaligned(.physicalAddress, 0x2008)) {
            try t.map(Mapping(physicalBase: 0x2008, virtualBase: 0x1000, length: 0x1000, kind: .readOnly))
        }
        #expect(t.ops.memory.liveTableCount == 1)
    }

    @Test("ranges outside the virtual space, across the canonical hole, or wrapping")
    func outside() {
        var t = A(ops: .init(), allowedLeafSizes: .all)
        #expect(
            throws: PageTableError.outsideVirtualSpace(
                virtualAddress: 0x8000_0000_0000, length: 0x1000, architecture: .amd64)
        ) {
            try t.map(.identity(0x8000_0000_0000, length: 0x1000, kind: .readOnly))
        }
        #expect(
            throws: PageTableError.outsideVirtualSpace(
                virtualAddress: 0x7FFF_FFFF_F000, length: 0x2000, architecture: .amd64)
        ) {
            try t.map(Mapping(physicalBase: 0, virtualBase: 0x7FFF_FFFF_F000, length: 0x2000, kind: .readOnly))
        }
        #expect(throws: PageTableError.rangeOverflow(virtualAddress: 0xFFFF_FFFF_FFFF_F000, length: 0x2000)) {
            try t.unmap(virtualBase: 0xFFFF_FFFF_FFFF_F000, length: 0x2000)
        }
        #expect(
            throws: PageTableError.physicalAddressTooWide(
                physicalAddress: 0xF_FFFF_FFFF_F000, length: 0x2000, architecture: .amd64)
        ) {
            try t.map(Mapping(physicalBase: 0xF_FFFF_FFFF_F000, virtualBase: 0, length: 0x2000, kind: .readOnly))
        }
        var i = I(ops: .init(), allowedLeafSizes: .all)
        #expect(
            throws: PageTableError.outsideVirtualSpace(virtualAddress: 0xFFFF_F000, length: 0x2000, architecture: .i686)
        ) {
            try i.map(Mapping(physicalBase: 0, virtualBase: 0xFFFF_F000, length: 0x2000, kind: .readOnly))
        }
        #expect(
            throws: PageTableError.physicalAddressTooWide(
                physicalAddress: 0xFFFF_F000, length: 0x2000, architecture: .i686)
        ) {
            try i.map(Mapping(physicalBase: 0xFFFF_F000, virtualBase: 0, length: 0x2000, kind: .readOnly))
        }
        #expect(t.ops.memory.liveTableCount == 1 && i.ops.memory.liveTableCount == 1)
    }

    @Test("zero length is a no-op")
    func zeroLength() throws {
        var t = A(ops: .init(), allowedLeafSizes: .all)
        try t.map(.identity(0x1000, length: 0, kind: .readWrite))
        try t.unmap(virtualBase: 0x1000, length: 0)
        try t.protect(virtualBase: 0x1000, length: 0, kind: .readOnly)
        #expect(try t.translate(virtualBase: 0, length: 0).isEmpty)
        #expect(t.ops.memory.liveTableCount == 1)
    }

    @Test("a full arena fails the map and leaves no half-linked table")
    func arenaFull() throws {
        var t = A(ops: .init(capacity: 3), allowedLeafSizes: .smallPagesOnly)
        #expect(throws: PageTableError.outOfTableMemory) {
            try t.map(.identity(0x1000, length: 0x1000, kind: .readWrite))
        }
        #expect(t.ops.memory.liveTableCount == 1)
        #expect(t.ops.memory.pages[0].allSatisfy { $0 == 0 })
        // With room, the same map succeeds and reuses the pages given back.
        t.ops.memory.capacity = 4
        try t.map(.identity(0x1000, length: 0x1000, kind: .readWrite))
        #expect(try t.lookup(0x1000)?.physicalAddress == 0x1000)
    }

    @Test("a map that runs out half-way keeps what it linked, and frees what it did not")
    func arenaFullMidway() throws {
        var t = A(ops: .init(capacity: 4), allowedLeafSizes: .smallPagesOnly)
        try t.map(.identity(0x1000, length: 0x1000, kind: .readWrite))  // root, PDPT, PD, PT for 0..2 MiB
        // 0x1FF000 lands in the existing PT; 0x200000 needs a second PT, and there is no room for it.
        #expect(throws: PageTableError.outOfTableMemory) {
            try t.map(.identity(0x1F_F000, length: 0x2000, kind: .readWrite))
        }
        let leaves = try t.translate(virtualBase: 0, length: 1 << 30)
        #expect(leaves.map(\.virtualAddress) == [0x1000, 0x1F_F000])  // the prefix that was applied
        #expect(t.ops.memory.liveTableCount == 4)
        // A brand-new path that fails half-way is given back whole: nothing linked, nothing leaked.
        var fresh = A(ops: .init(capacity: 3), allowedLeafSizes: .smallPagesOnly)
        #expect(throws: PageTableError.outOfTableMemory) {
            try fresh.map(.identity(0x1000, length: 0x1000, kind: .readWrite))
        }
        #expect(fresh.ops.memory.liveTableCount == 1)
    }
}
