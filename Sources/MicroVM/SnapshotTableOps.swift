public import PageTables

/// Movable table ops over a snapshot's tables: the tables a snapshot holds are never written by the host;
/// the first write to one copies it into a free table of the arena (which belongs to this machine alone),
/// and the engine relinks its ancestors up to a new root.
///
/// So a restored machine changes its mappings without touching a page of the snapshot's tables (in the
/// machine's private view of them, or in the image other machines share), and a reset only has to put the
/// old root back: the snapshot's tables were never changed. Tables made since the snapshot (copies, new
/// tables) are written in place. When the arena has no table left for a copy, the write is made in place
/// (the private view keeps the image untouched, and the reset copies the page back).
///
/// The guest may still write its own tables through a mapping: those writes change its private view, which
/// KVM's dirty tracking reports and a reset restores. A guest that edits its tables after the host changed
/// its mappings should walk them again from CR3, since the host's copies replaced the originals there.
public struct SnapshotTableOps<Mode: PagingMode>: MovableTableOps {
    /// A table's guest-physical address.
    public typealias TableAddress = UInt64

    /// The arena the copies come from, with in-place reads and writes.
    var arena: GuestTableOps<Mode>
    /// Tables this machine made since its snapshot: written in place.
    var own: Set<UInt64> = []

    /// Continues the snapshot's arena with its root.
    init(memory: GuestMemory, arena state: ArenaState, root: UInt64) {
        arena = GuestTableOps(memory: memory, arena: state, root: root)
    }

    /// Movable ops over `arena`.
    init(arena: GuestTableOps<Mode>) { self.arena = arena }

    /// The memory holding the tables.
    public var memory: GuestMemory { arena.memory }
    /// The root table's guest-physical address: the snapshot's root until a write moves it.
    public var root: UInt64 { arena.root }

    /// The guest-physical address of the entry `byteOffset` bytes into `table`.
    @inlinable public func entryAddress(in table: UInt64, byteOffset: Int) -> UInt64 {
        table &+ UInt64(truncatingIfNeeded: byteOffset)
    }
    /// The entry at `address`, read where it is.
    public func readEntry(at address: UInt64) -> UInt64 { arena.readEntry(at: address) }
    /// Passes `count` consecutive entries of `table`, from `byteOffset`, to `body` until it returns false.
    public func readEntries(in table: UInt64, byteOffset: Int, count: Int, _ body: (UInt64) -> Bool) {
        arena.readEntries(in: table, byteOffset: byteOffset, count: count, body)
    }
    /// `table` itself: a table's address is its guest-physical address.
    public func physicalAddress(of table: UInt64) -> UInt64 { table }
    /// The table at `physicalAddress` if it is a page-aligned page inside guest RAM, else `nil`.
    public func table(atPhysicalAddress physicalAddress: UInt64) -> UInt64? {
        arena.table(atPhysicalAddress: physicalAddress)
    }

    /// A zeroed table from the arena, which this machine may write in place from now on.
    /// - Throws: `PageTableError.outOfTableMemory` when the arena is full.
    public mutating func allocateTable() throws(PageTableError) -> UInt64 {
        let table = try arena.allocateTable()
        own.insert(table)
        return table
    }

    /// Gives back a table this machine made; a table of the snapshot stays where it is.
    public mutating func freeTable(_ table: UInt64) {
        // A snapshot's table stays where it is (the snapshot still uses it); only our own go back.
        guard own.remove(table) != nil else { return }
        arena.freeTable(table)
    }

    /// The table to write: `table` itself if it is ours, else a copy of it (nil when no table is free).
    mutating func writable(_ table: UInt64) -> UInt64? {
        if own.contains(table) { return nil }
        guard let copy = try? arena.allocateTable() else { return nil }
        own.insert(copy)
        arena.memory.copy(from: table, to: copy, count: 4096)
        return copy
    }

    /// Writes one entry: in place in a table this machine made, else in a copy of the snapshot's table,
    /// whose address it returns so the engine relinks the parent (in place, returning `nil`, when the arena
    /// has no table left for the copy).
    public mutating func writeEntry(in table: UInt64, byteOffset: Int, _ value: UInt64) -> UInt64? {
        let moved = writable(table)
        _ = arena.writeEntry(in: moved ?? table, byteOffset: byteOffset, value)
        return moved
    }

    /// Writes `count` consecutive entries (`first`, `first + step`, ...) as ``writeEntry(in:byteOffset:_:)``
    /// writes one: returns the copy's address when the table moved.
    public mutating func writeEntries(in table: UInt64, byteOffset: Int, count: Int, first: UInt64, step: UInt64)
        -> UInt64?
    {
        let moved = writable(table)
        _ = arena.writeEntries(in: moved ?? table, byteOffset: byteOffset, count: count, first: first, step: step)
        return moved
    }

    /// Makes `table` (a copy of the root) the root.
    public mutating func replaceRoot(with table: UInt64) { arena.replaceRoot(with: table) }

    /// Bytes of the arena in use.
    public var bytesInUse: UInt64 { arena.bytesInUse }
    /// See ``GuestTableOps/arenaMayBeDirty()``.
    public mutating func arenaMayBeDirty() { arena.arenaMayBeDirty() }
    /// Where the arena stands.
    public var arenaState: ArenaState { arena.arenaState }
    /// Back to the snapshot's arena and root: every table made since is forgotten.
    public mutating func restore(_ state: ArenaState, root: UInt64) {
        arena.restore(state, root: root)
        own.removeAll(keepingCapacity: true)
    }
}
