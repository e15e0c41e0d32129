public import PageTables

/// The guest's page tables, whatever its paging mode: the run-time face of ``GuestPageTables``.
///
/// Code that picks the architecture at run time holds an `any AddressSpace`; each call crosses one
/// dynamic dispatch into ``AMD64PageTables`` or ``I686PageTables``, whose engine code is specialised.
public protocol AddressSpace: AnyObject {
    /// The paging mode.
    var architecture: Architecture { get }
    /// The value for CR3.
    var rootPhysicalAddress: UInt64 { get }
    /// Whether CR4.PSE must be set (i686 with 4 MiB leaves allowed).
    var requiresPageSizeExtension: Bool { get }
    /// Bytes of the arena the tables occupy.
    var tableBytesInUse: UInt64 { get }
    /// The canonical ranges of the whole virtual space (one on i686, two halves on amd64).
    var virtualSpace: [(base: UInt64, length: UInt64)] { get }
    /// The large leaves the processor walks (see `PageTable.walkableLeafSizes` in PageTables).
    var walkableLeafSizes: AllowedLeafSizes { get }
    /// The large leaves `map` may write (see `PageTable.allowedLeafSizes` in PageTables).
    var allowedLeafSizes: AllowedLeafSizes { get }

    /// Maps `mapping`, creating or overwriting entries (`PageTable.map(_:)`).
    func map(_ mapping: Mapping) throws(PageTableError)
    /// Clears the leaves of a range and frees the tables it leaves empty (`PageTable.unmap(virtualBase:length:)`).
    func unmap(virtualBase: UInt64, length: UInt64) throws(PageTableError)
    /// Gives the present leaves of a range a new kind, keeping their frames
    /// (`PageTable.protect(virtualBase:length:kind:userAccessible:)`).
    func protect(virtualBase: UInt64, length: UInt64, kind: MappingKind, userAccessible: Bool) throws(PageTableError)
    /// The translation of one virtual address, or `nil` where no present leaf maps it (`PageTable.lookup(_:)`).
    func lookup(_ virtualAddress: UInt64) throws(PageTableError) -> Translation?
    /// One translation per present leaf of a range (`PageTable.translate(virtualBase:length:maximumTables:)`).
    func translate(virtualBase: UInt64, length: UInt64) throws(PageTableError) -> [Translation]
    /// The translations of a range, with neighbours that continue each other merged into runs
    /// (`PageTable.coalescedTranslate(virtualBase:length:maximumTables:)`).
    func coalescedTranslate(virtualBase: UInt64, length: UInt64) throws(PageTableError) -> [Translation]
    /// Calls `body` with each present leaf of a range, entering at most `maximumTables` tables
    /// (`PageTable.forEachLeaf(virtualBase:length:maximumTables:_:)`).
    func forEachLeaf(
        virtualBase: UInt64, length: UInt64, maximumTables: Int, _ body: (Translation) -> Void
    ) throws(PageTableError)
    /// The tables under another root in the same memory, read where they are (a root the guest built and
    /// loaded into CR3): walks and lookups work; maps that need a new table fail.
    func view(root: UInt64) -> any AddressSpace
    /// Tells the arena that the guest has run and may have written anywhere in RAM.
    func arenaMayBeDirty()
    /// Where the page-table arena stands.
    var arena: ArenaState { get }
    /// Puts the arena and the root back as a snapshot had them.
    func restore(arena: ArenaState, root: UInt64)
    /// Another address space over the same memory and arena, rooted at `root` (a table in RAM): what the
    /// host uses to read and change an extra space (one it built, or one the guest registered).
    func space(root: UInt64) -> any AddressSpace
    /// A new address space: a fresh root in the arena whose entries for each of the `shared` blocks are this
    /// space's own (so the tables below them are the same tables, not copies); empty elsewhere.
    ///
    /// - Parameter shared: ranges whose bases and lengths are multiples of the smallest block the tables
    ///   can share (2 MiB on amd64, 4 MiB on i686); each is shared in the largest aligned blocks that fit.
    /// - Throws: `PageTableError.misaligned` for a range that is not made of such blocks,
    ///   `PageTableError.outOfTableMemory` when the arena is full, range errors.
    func makeSpace(sharing shared: [(virtualBase: UInt64, length: UInt64)]) throws(PageTableError) -> any AddressSpace
}

/// Page tables of one paging mode, built in place in guest RAM: what the two concrete address spaces
/// share. The requirements are implemented once here and inlined into each concrete class, so every call
/// through `any AddressSpace` lands in engine code specialised for that mode (a generic class would run the
/// engine unspecialised, through metadata lookups).
public protocol GuestPageTables: AddressSpace {
    /// The table ops: in place (``GuestTableOps``) or over a snapshot's tables (``SnapshotTableOps``).
    associatedtype Ops: GuestTableStore
    /// The engine over the guest-memory table ops.
    var tables: PageTable<Ops> { get set }
    /// Wraps tables.
    init(tables: PageTable<Ops>)
}

/// Table ops over guest RAM with an arena: in place (``GuestTableOps``) or over a snapshot's tables
/// (``SnapshotTableOps``).
public protocol GuestTableStore: TableOps where TableAddress == UInt64 {
    /// The memory holding the tables.
    var memory: GuestMemory { get }
    /// Bytes of the arena in use.
    var bytesInUse: UInt64 { get }
    /// From now on, clear never-used tables when allocating them.
    mutating func arenaMayBeDirty()
    /// Where the arena stands.
    var arenaState: ArenaState { get }
    /// Puts the arena and the root back as `state` and `root` had them.
    mutating func restore(_ state: ArenaState, root: UInt64)
    /// The same kind of ops over the same memory and arena, with another root.
    func sibling(root: UInt64) -> Self
}

extension GuestTableOps: GuestTableStore {
    /// In-place ops over the same memory and arena, rooted at `root`.
    public func sibling(root: UInt64) -> Self { GuestTableOps(sharingArenaOf: self, root: root) }
}
extension SnapshotTableOps: GuestTableStore {
    /// Movable ops over the same memory and arena, rooted at `root`.
    public func sibling(root: UInt64) -> Self { SnapshotTableOps(arena: arena.sibling(root: root)) }
}

extension GuestPageTables {
    /// The paging mode of `Ops`.
    @inline(__always) public var architecture: Architecture { Ops.Mode.architecture }
    /// The root table's guest-physical address: the value for CR3.
    @inline(__always) public var rootPhysicalAddress: UInt64 { tables.rootPhysicalAddress }
    /// Whether CR4.PSE must be set: i686 tables that may hold 4 MiB leaves.
    @inline(__always) public var requiresPageSizeExtension: Bool { tables.requiresPageSizeExtension }
    /// Bytes of the arena in use by tables (every space over the arena counts).
    @inline(__always) public var tableBytesInUse: UInt64 { tables.ops.bytesInUse }
    /// The large leaves the processor walks.
    @inline(__always) public var walkableLeafSizes: AllowedLeafSizes { tables.walkableLeafSizes }
    /// The large leaves `map` may write.
    @inline(__always) public var allowedLeafSizes: AllowedLeafSizes { tables.allowedLeafSizes }
    /// The canonical ranges of the mode's virtual space.
    @inline(__always) public var virtualSpace: [(base: UInt64, length: UInt64)] {
        PageTable<Ops>.virtualSpace
    }
    /// Refuses to walk from a root that is not a whole page of guest RAM. The engine checks every table
    /// reference it reads before following it, but starts from the root as given: the root of a ``view(root:)``
    /// is whatever the guest loaded into CR3, which may lie outside RAM. Such a root is refused as the
    /// reference it is (CR3, the entry one level above the top table) to a table outside table memory.
    @inline(__always) func checkRoot(walking virtualAddress: UInt64) throws(PageTableError) {
        let root = rootPhysicalAddress
        guard root & 0xFFF == 0, tables.ops.memory.contains(root, count: 4096) else {
            throw .entryOutsideTableMemory(virtualAddress: virtualAddress, level: Ops.Mode.levelCount, entry: root)
        }
    }
    /// Maps `mapping` with the engine, in the tables in guest RAM.
    @inline(__always) public func map(_ mapping: Mapping) throws(PageTableError) {
        try checkRoot(walking: mapping.virtualBase)
        try tables.map(mapping)
    }
    /// Unmaps `[virtualBase, virtualBase + length)`, freeing the tables it leaves empty.
    @inline(__always) public func unmap(virtualBase: UInt64, length: UInt64) throws(PageTableError) {
        try checkRoot(walking: virtualBase)
        try tables.unmap(virtualBase: virtualBase, length: length)
    }
    /// Gives the present leaves of `[virtualBase, virtualBase + length)` a new kind and user access.
    @inline(__always) public func protect(virtualBase: UInt64, length: UInt64, kind: MappingKind, userAccessible: Bool)
        throws(PageTableError)
    {
        try checkRoot(walking: virtualBase)
        try tables.protect(virtualBase: virtualBase, length: length, kind: kind, userAccessible: userAccessible)
    }
    /// Walks over guest RAM enter each table once when the host built them, and there are never more tables
    /// than pages of RAM: a walk that enters more is looping through tables the guest rewrote.
    @inline(__always) var walkLimit: Int { Int(truncatingIfNeeded: tables.ops.memory.size >> 12) }
    /// The translation of `virtualAddress`, or `nil` where no present leaf maps it.
    @inline(__always) public func lookup(_ virtualAddress: UInt64) throws(PageTableError) -> Translation? {
        try checkRoot(walking: virtualAddress)
        return try tables.lookup(virtualAddress)
    }
    /// One translation per present leaf of the range; a walk enters at most one table per page of RAM.
    @inline(__always) public func translate(virtualBase: UInt64, length: UInt64) throws(PageTableError) -> [Translation]
    {
        try checkRoot(walking: virtualBase)
        return try tables.translate(virtualBase: virtualBase, length: length, maximumTables: walkLimit)
    }
    /// The range's translations merged into runs; a walk enters at most one table per page of RAM.
    @inline(__always) public func coalescedTranslate(virtualBase: UInt64, length: UInt64) throws(PageTableError)
        -> [Translation]
    {
        try checkRoot(walking: virtualBase)
        return try tables.coalescedTranslate(virtualBase: virtualBase, length: length, maximumTables: walkLimit)
    }
    /// Calls `body` with each present leaf of the range, entering at most `maximumTables` tables (and never
    /// more than one per page of RAM).
    @inline(__always) public func forEachLeaf(
        virtualBase: UInt64, length: UInt64, maximumTables: Int, _ body: (Translation) -> Void
    ) throws(PageTableError) {
        try checkRoot(walking: virtualBase)
        try tables.forEachLeaf(
            virtualBase: virtualBase, length: length, maximumTables: min(maximumTables, walkLimit), body)
    }
    /// From now on, the arena clears never-used tables when it hands them out.
    @inline(__always) public func arenaMayBeDirty() { tables.ops.arenaMayBeDirty() }
    /// Where the page-table arena stands.
    public var arena: ArenaState { tables.ops.arenaState }
    /// Puts the arena and the root back as a snapshot had them.
    public func restore(arena: ArenaState, root: UInt64) { tables.ops.restore(arena, root: root) }

    /// Another address space of the same kind over the same memory and arena, rooted at `root`.
    public func space(root: UInt64) -> any AddressSpace {
        Self(
            tables: PageTable(
                ops: tables.ops.sibling(root: root & Ops.Mode.frameAddressMask), allowedLeafSizes: tables.allowedLeafSizes,
                walkableLeafSizes: tables.walkableLeafSizes))
    }

    /// A new root in the arena whose entries for the `shared` blocks are this space's own.
    ///
    /// - Parameter shared: ranges in whole blocks of the smallest shareable size (2 MiB on amd64, 4 MiB on
    ///   i686), each shared in the largest aligned blocks that fit.
    /// - Throws: `PageTableError.misaligned` for a range not made of such blocks,
    ///   `PageTableError.outOfTableMemory` when the arena is full.
    public func makeSpace(sharing shared: [(virtualBase: UInt64, length: UInt64)]) throws(PageTableError)
        -> any AddressSpace
    {
        typealias Mode = Ops.Mode
        // The blocks an entry can share, largest first: one entry of the level above each shareable table.
        let top = Mode.levelCount - 1
        let blocks: [(depth: Int, size: UInt64)] = (1...top).map { depth in
            (depth, UInt64(1) << UInt64(Mode.shift(ofLevel: top - depth + 1)))
        }
        let smallest = blocks.last!.size
        var references: [SpaceReference] = []
        let owner = rootPhysicalAddress
        for range in shared {
            guard range.virtualBase % smallest == 0 else { throw .misaligned(.virtualAddress, range.virtualBase) }
            guard range.length % smallest == 0 else { throw .misaligned(.length, range.length) }
            var address = range.virtualBase
            let end = range.virtualBase &+ range.length
            while address != end {
                let remaining = end &- address
                let block = blocks.first { address % $0.size == 0 && $0.size <= remaining }!
                references.append(
                    SpaceReference(
                        depth: block.depth, space: owner, virtualAddress: address, ownerVirtualAddress: address,
                        length: block.size, tablePhysicalAddress: 0))
                address &+= block.size
            }
        }
        var ops = tables.ops
        let root = try ops.allocateTable()
        var space = PageTable(
            ops: ops.sibling(root: root), allowedLeafSizes: tables.allowedLeafSizes,
            walkableLeafSizes: tables.walkableLeafSizes)
        for reference in references { try space.linkShared(reference, builtRoots: [owner: tables.ops.root]) }
        return Self(tables: space)
    }
}

/// amd64 4-level tables in guest RAM.
public final class AMD64PageTables: GuestPageTables {
    /// The engine over the tables in guest RAM.
    public var tables: PageTable<GuestTableOps<AMD64>>
    /// Wraps tables already built.
    public init(tables: PageTable<GuestTableOps<AMD64>>) { self.tables = tables }
    /// The tables under `root` in the same memory, read where they are, with no arena.
    public func view(root: UInt64) -> any AddressSpace {
        AMD64PageTables(
            tables: PageTable(
                ops: GuestTableOps(memory: tables.ops.memory, root: root & AMD64.frameAddressMask),
                allowedLeafSizes: tables.allowedLeafSizes, walkableLeafSizes: tables.walkableLeafSizes))
    }
    /// An empty address space whose tables live in `[arenaBase, arenaBase + arenaSize)` of `memory`.
    public init(
        memory: GuestMemory, arenaBase: UInt64, arenaSize: UInt64, allowedLeafSizes: AllowedLeafSizes,
        walkableLeafSizes: AllowedLeafSizes? = nil
    ) throws(PageTableError) {
        tables = PageTable(
            ops: try GuestTableOps(memory: memory, arenaBase: arenaBase, arenaSize: arenaSize),
            allowedLeafSizes: allowedLeafSizes, walkableLeafSizes: walkableLeafSizes)
    }
}

/// i686 2-level tables in guest RAM.
public final class I686PageTables: GuestPageTables {
    /// The engine over the tables in guest RAM.
    public var tables: PageTable<GuestTableOps<I686>>
    /// Wraps tables already built.
    public init(tables: PageTable<GuestTableOps<I686>>) { self.tables = tables }
    /// The tables under `root` in the same memory, read where they are, with no arena.
    public func view(root: UInt64) -> any AddressSpace {
        I686PageTables(
            tables: PageTable(
                ops: GuestTableOps(memory: tables.ops.memory, root: root & I686.frameAddressMask),
                allowedLeafSizes: tables.allowedLeafSizes, walkableLeafSizes: tables.walkableLeafSizes))
    }
    /// An empty address space whose tables live in `[arenaBase, arenaBase + arenaSize)` of `memory`.
    public init(
        memory: GuestMemory, arenaBase: UInt64, arenaSize: UInt64, allowedLeafSizes: AllowedLeafSizes,
        walkableLeafSizes: AllowedLeafSizes? = nil
    ) throws(PageTableError) {
        tables = PageTable(
            ops: try GuestTableOps(memory: memory, arenaBase: arenaBase, arenaSize: arenaSize),
            allowedLeafSizes: allowedLeafSizes, walkableLeafSizes: walkableLeafSizes)
    }
}

/// The address space of a snapshot's tables, continued where they are in `memory` (a private view of the
/// snapshot's image) with movable ops: changes copy the tables they touch into the arena as the snapshot
/// left it.
@_spi(Testing) public func restoredAddressSpace(
    architecture: Architecture, memory: GuestMemory, arena: ArenaState, root: UInt64, allowedLeafSizes: AllowedLeafSizes,
    walkableLeafSizes: AllowedLeafSizes
) -> any AddressSpace {
    switch architecture {
    case .amd64:
        RestoredAMD64PageTables(
            tables: PageTable(
                ops: SnapshotTableOps(memory: memory, arena: arena, root: root), allowedLeafSizes: allowedLeafSizes,
                walkableLeafSizes: walkableLeafSizes))
    case .i686:
        RestoredI686PageTables(
            tables: PageTable(
                ops: SnapshotTableOps(memory: memory, arena: arena, root: root), allowedLeafSizes: allowedLeafSizes,
                walkableLeafSizes: walkableLeafSizes))
    }
}

/// amd64 4-level tables of a snapshot, continued with movable ops (``SnapshotTableOps``).
public final class RestoredAMD64PageTables: GuestPageTables {
    /// The engine over the snapshot's tables, with movable ops.
    public var tables: PageTable<SnapshotTableOps<AMD64>>
    /// Wraps tables continued from a snapshot.
    public init(tables: PageTable<SnapshotTableOps<AMD64>>) { self.tables = tables }
    /// The tables under `root` in the same memory, read where they are, with no arena.
    public func view(root: UInt64) -> any AddressSpace {
        AMD64PageTables(
            tables: PageTable(
                ops: GuestTableOps(memory: tables.ops.memory, root: root & AMD64.frameAddressMask),
                allowedLeafSizes: tables.allowedLeafSizes, walkableLeafSizes: tables.walkableLeafSizes))
    }
}

/// i686 2-level tables of a snapshot, continued with movable ops (``SnapshotTableOps``).
public final class RestoredI686PageTables: GuestPageTables {
    /// The engine over the snapshot's tables, with movable ops.
    public var tables: PageTable<SnapshotTableOps<I686>>
    /// Wraps tables continued from a snapshot.
    public init(tables: PageTable<SnapshotTableOps<I686>>) { self.tables = tables }
    /// The tables under `root` in the same memory, read where they are, with no arena.
    public func view(root: UInt64) -> any AddressSpace {
        I686PageTables(
            tables: PageTable(
                ops: GuestTableOps(memory: tables.ops.memory, root: root & I686.frameAddressMask),
                allowedLeafSizes: tables.allowedLeafSizes, walkableLeafSizes: tables.walkableLeafSizes))
    }
}

/// Makes an empty address space for `architecture`, its tables in an arena of `memory`: an
/// ``AMD64PageTables`` or an ``I686PageTables``.
///
/// - Parameters:
///   - architecture: the paging mode: amd64 4-level or i686 2-level tables.
///   - memory: the guest RAM that holds the tables.
///   - arenaBase: the first byte of the arena the tables are allocated from (page-aligned, inside `memory`).
///   - arenaSize: the arena's size in bytes (a multiple of 4 KiB).
///   - allowedLeafSizes: the large leaves `map` may write.
///   - walkableLeafSizes: the large leaves the vCPU walks (see `PageTable.walkableLeafSizes` in PageTables);
///     by default the allowed ones (plus 2 MiB on amd64).
/// - Throws: `PageTableError.outOfTableMemory` when the arena cannot hold the root table.
public func makeAddressSpace(
    architecture: Architecture, memory: GuestMemory, arenaBase: UInt64, arenaSize: UInt64,
    allowedLeafSizes: AllowedLeafSizes, walkableLeafSizes: AllowedLeafSizes? = nil
) throws(PageTableError) -> any AddressSpace {
    switch architecture {
    case .amd64:
        try AMD64PageTables(
            memory: memory, arenaBase: arenaBase, arenaSize: arenaSize, allowedLeafSizes: allowedLeafSizes,
            walkableLeafSizes: walkableLeafSizes)
    case .i686:
        try I686PageTables(
            memory: memory, arenaBase: arenaBase, arenaSize: arenaSize, allowedLeafSizes: allowedLeafSizes,
            walkableLeafSizes: walkableLeafSizes)
    }
}

extension AddressSpace {
    /// The address space as coalesced ranges, one per line: virtual range, physical range, size,
    /// permissions (`r`, `w`, `x`, `u` for user, `c` for copy-on-write) and leaf size.
    ///
    /// ```
    /// 0x0000000000001000-0x00000000000fffff -> 0x0000000000001000-0x00000000000fffff   1020 KiB  rw--  4 KiB
    /// ```
    ///
    /// Bounded whatever the tables say (a guest can point many entries at one table, or at its own
    /// ancestors): at most `lineLimit` lines, then one line counting the ranges not shown; the walk enters
    /// at most `tableLimit` tables, and a walk that would enter more, or meets an entry it cannot follow,
    /// ends the dump with one line saying so.
    public func dump(lineLimit: Int = 1000, tableLimit: Int = 4096) -> String {
        let digits = architecture == .amd64 ? 16 : 8
        func address(_ value: UInt64) -> String {
            let text = String(value, radix: 16)
            return "0x" + String(repeating: "0", count: max(0, digits - text.count)) + text
        }
        var text = ""
        var lines = 0
        var hidden = 0
        func emit(_ run: Translation) {
            guard lines < lineLimit else {
                hidden += 1
                return
            }
            lines += 1
            let permissions =
                "r" + (run.kind.isWritable ? "w" : "-") + (run.kind.isExecutable ? "x" : "-")
                + (run.userAccessible ? "u" : "-")
                + ({ if case .copyOnWrite = run.kind { return "c" } else { return "" } }())
            let size = byteSize(run.length)
            let padded = String(repeating: " ", count: max(0, 10 - size.count)) + size
            text += "\(address(run.virtualAddress))-\(address(run.virtualAddress &+ run.length &- 1)) -> "
            text += "\(address(run.physicalAddress))-\(address(run.physicalAddress &+ run.length &- 1)) "
            text += "\(padded)  \(permissions.padding(5))  \(run.leafSize)\n"
        }
        var pending: Translation? = nil
        var failure: PageTableError? = nil
        for range in virtualSpace {
            do {
                try forEachLeaf(virtualBase: range.base, length: range.length, maximumTables: tableLimit) { leaf in
                    if var run = pending, run.virtualAddress &+ run.length == leaf.virtualAddress,
                        run.physicalAddress &+ run.length == leaf.physicalAddress, run.kind == leaf.kind,
                        run.userAccessible == leaf.userAccessible, run.leafSize == leaf.leafSize
                    {
                        run.length &+= leaf.length
                        pending = run
                    } else {
                        if let run = pending { emit(run) }
                        pending = leaf
                    }
                }
            } catch {
                failure = error
                break
            }
        }
        if let run = pending { emit(run) }
        if hidden > 0 { text += "... \(hidden) more range\(hidden == 1 ? "" : "s") not shown (at most \(lineLimit) lines)\n" }
        if let failure { text += "... the walk stopped: \(failure)\n" }
        return text
    }
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}
