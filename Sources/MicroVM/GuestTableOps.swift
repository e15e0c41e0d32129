public import PageTables

/// In-place table ops over guest RAM: the tables the vCPU walks, built and edited where they live.
///
/// Tables are allocated from an arena inside RAM (a bump pointer plus a free list); a table's address is
/// its guest-physical address, which is also what goes into CR3 and parent entries. The engine treats any
/// table reference inside RAM as readable, so walks over tables a guest rewrote stay inside RAM.
public struct GuestTableOps<Mode: PagingMode>: InPlaceTableOps {
    /// A table's guest-physical address.
    public typealias TableAddress = UInt64

    /// The memory holding the tables.
    public let memory: GuestMemory
    /// Where tables come from: shared by every address space over the same arena (a machine's boot space
    /// and the extra ones it builds), so they never hand out the same table twice.
    @usableFromInline let arena: TableArena
    /// The root table's guest-physical address.
    public private(set) var root: UInt64

    /// First byte of the arena.
    public var arenaBase: UInt64 { arena.base }
    /// One past the last byte of the arena.
    public var arenaEnd: UInt64 { arena.end }

    /// Claims the arena `[arenaBase, arenaBase + arenaSize)` and allocates the root table in it.
    ///
    /// - Parameters:
    ///   - memory: the guest RAM that holds the arena.
    ///   - arenaBase: the arena's first byte: page-aligned, inside `memory` (traps otherwise).
    ///   - arenaSize: the arena's size in bytes: a multiple of 4 KiB, inside `memory` (traps otherwise).
    ///   - arenaIsZero: the arena holds only zeros (fresh `mmap` memory): allocation can skip
    ///     clearing never-used tables. Call ``arenaMayBeDirty()`` once the guest has run.
    /// - Throws: `PageTableError.outOfTableMemory` if the arena cannot hold the root.
    public init(memory: GuestMemory, arenaBase: UInt64, arenaSize: UInt64, arenaIsZero: Bool = true)
        throws(PageTableError)
    {
        precondition(arenaBase & 0xFFF == 0 && arenaSize & 0xFFF == 0, "the arena must be page-aligned")
        precondition(memory.contains(arenaBase, count: arenaSize), "the arena must lie inside guest memory")
        self.memory = memory
        arena = TableArena(
            base: arenaBase, end: arenaBase + arenaSize, next: arenaBase, freeTables: [], populatedEnd: arenaBase,
            untouchedIsZero: arenaIsZero)
        // Big arenas (guests of a GiB and more) fill faster from huge pages; small ones would only pay for
        // clearing 2 MiB they never use.
        if arenaSize >= 2 << 20 { memory.adviseHugePages(at: arenaBase, count: arenaSize) }
        self.root = 0
        self.root = try allocateTable()
    }

    /// Reads the tables under `root` where they are, with no arena: for walking tables the guest built
    /// itself (the root it loaded into CR3). Allocation fails with `PageTableError.outOfTableMemory`, and
    /// no table is ever freed, so maps that need a new table fail instead of writing outside the tables.
    public init(memory: GuestMemory, root: UInt64) {
        self.memory = memory
        arena = TableArena(base: 0, end: 0, next: 0, freeTables: [], populatedEnd: 0, untouchedIsZero: false)
        self.root = root
    }

    /// Continues an arena as `state` left it, with the root at `root`: tables built before (a snapshot's)
    /// are read and written where they are.
    public init(memory: GuestMemory, arena state: ArenaState, root: UInt64) {
        precondition(
            memory.contains(state.base, count: state.end - state.base), "the arena must lie inside guest memory")
        self.memory = memory
        // Memory that already holds a machine needs no populating ahead.
        arena = TableArena(
            base: state.base, end: state.end, next: state.next, freeTables: state.freeTables, populatedEnd: state.end,
            untouchedIsZero: false)
        self.root = root
    }

    /// Another root over the same memory and arena: tables it allocates come from the shared arena.
    public init(sharingArenaOf other: GuestTableOps<Mode>, root: UInt64) {
        memory = other.memory
        arena = other.arena
        self.root = root
    }

    /// Where the arena stands now.
    public var arenaState: ArenaState {
        unsafe ArenaState(base: arena.base, end: arena.end, next: arena.next, freeTables: arena.freeTables)
    }

    /// Puts the arena back as `state` had it, with the root at `root` (the tables' bytes are the caller's
    /// business: a reset copies them back with the rest of memory).
    public mutating func restore(_ state: ArenaState, root: UInt64) {
        precondition(state.base == arena.base && state.end == arena.end, "a different arena")
        unsafe arena.next = state.next
        unsafe arena.freeTables = state.freeTables
        unsafe arena.untouchedIsZero = false
        self.root = root
    }

    /// Bytes of the arena in use (tables allocated and not freed).
    public var bytesInUse: UInt64 { unsafe arena.next - arena.base - UInt64(arena.freeTables.count) * 4096 }

    /// From now on, clear never-used tables when allocating them: the guest can write anywhere in RAM.
    public mutating func arenaMayBeDirty() { unsafe arena.untouchedIsZero = false }

    /// The guest-physical address of the entry `byteOffset` bytes into `table`.
    @inlinable public func entryAddress(in table: UInt64, byteOffset: Int) -> UInt64 {
        table &+ UInt64(truncatingIfNeeded: byteOffset)
    }

    /// The entry at `address`: 8 bytes on amd64, 4 zero-extended on i686. Traps outside guest RAM (the
    /// engine only asks for entries of tables that ``table(atPhysicalAddress:)`` accepted).
    @inlinable public func readEntry(at address: UInt64) -> UInt64 {
        if Mode.entryByteCount == 8 {
            guard let value = memory.load(UInt64.self, at: address) else {
                preconditionFailure("entry outside guest memory")
            }
            return value
        }
        guard let value = memory.load(UInt32.self, at: address) else {
            preconditionFailure("entry outside guest memory")
        }
        return UInt64(value)
    }

    /// Passes `count` consecutive entries of `table`, from `byteOffset`, to `body` until it returns false.
    @inlinable public func readEntries(in table: UInt64, byteOffset: Int, count: Int, _ body: (UInt64) -> Bool) {
        memory.loadRun(
            at: table &+ UInt64(truncatingIfNeeded: byteOffset), count: count, width: Mode.entryByteCount, body)
    }

    /// `table` itself: a table's address is its guest-physical address.
    @inlinable public func physicalAddress(of table: UInt64) -> UInt64 { table }

    /// The table at `physicalAddress` if it is a page-aligned page inside guest RAM, else `nil`.
    @inlinable public func table(atPhysicalAddress physicalAddress: UInt64) -> UInt64? {
        guard physicalAddress & 0xFFF == 0, memory.contains(physicalAddress, count: 4096) else { return nil }
        return physicalAddress
    }

    /// A zeroed table from the arena: a freed one first, else the next never-used one.
    /// - Throws: `PageTableError.outOfTableMemory` when the arena is full.
    @inlinable public mutating func allocateTable() throws(PageTableError) -> UInt64 {
        try arena.allocate(in: memory)
    }

    /// Gives `table` back to the arena, zeroed, if the arena handed it out and it is not the root; any other
    /// address (an entry a guest rewrote may point anywhere) is ignored.
    @inlinable public mutating func freeTable(_ table: UInt64) {
        arena.free(table, root: root, in: memory)
    }

    /// Writes `value` into the entry `byteOffset` bytes into `table`, in place (4 bytes on i686).
    @inlinable public mutating func writeEntry(in table: UInt64, byteOffset: Int, _ value: UInt64) -> Never? {
        let address = table &+ UInt64(truncatingIfNeeded: byteOffset)
        let stored =
            Mode.entryByteCount == 8
            ? memory.store(value, at: address) : memory.store(UInt32(truncatingIfNeeded: value), at: address)
        precondition(stored, "entry outside guest memory")
        return nil
    }

    /// Writes `count` consecutive entries of `table` from `byteOffset`: `first`, `first + step`, ...
    @inlinable public mutating func writeEntries(
        in table: UInt64, byteOffset: Int, count: Int, first: UInt64, step: UInt64
    ) -> Never? {
        memory.storeRun(
            at: table &+ UInt64(truncatingIfNeeded: byteOffset), count: count, width: Mode.entryByteCount,
            first: first, step: step)
        return nil
    }

    /// Makes `table` the root.
    public mutating func replaceRoot(with table: UInt64) { root = table }
}

/// The free space of a page-table arena in guest RAM: a bump pointer over never-used tables and a list of
/// tables given back. A class, so that several address spaces over one arena share it. Its fields opt out of
/// dynamic exclusivity checks (a call into the runtime per access, a quarter of a big map's time): every access
/// is a short read or write from the one thread that owns the machine, never held across a call that could
/// reach the same field.
@usableFromInline final class TableArena {
    /// The arena: `[base, end)`.
    @usableFromInline let base: UInt64, end: UInt64
    /// Next never-used table.
    @exclusivity(unchecked) @usableFromInline var next: UInt64
    /// Tables given back, reused first.
    @exclusivity(unchecked) @usableFromInline var freeTables: [UInt64]
    /// End of the arena pages already faulted in ahead of allocation.
    @exclusivity(unchecked) @usableFromInline var populatedEnd: UInt64
    /// Whether never-used tables are known to hold zeros (fresh memory the guest has not run on).
    @exclusivity(unchecked) @usableFromInline var untouchedIsZero: Bool

    init(base: UInt64, end: UInt64, next: UInt64, freeTables: [UInt64], populatedEnd: UInt64, untouchedIsZero: Bool) {
        self.base = base
        self.end = end
        unsafe self.next = next
        unsafe self.freeTables = freeTables
        unsafe self.populatedEnd = populatedEnd
        unsafe self.untouchedIsZero = untouchedIsZero
    }

    /// Arena bytes in use before populating ahead starts: a boot's dozen tables fault in cheaper one by one.
    @usableFromInline static var populateThreshold: UInt64 { 64 << 12 }

    /// A zeroed table.
    /// - Throws: ``PageTableError/outOfTableMemory`` when the arena is full.
    @inlinable func allocate(in memory: GuestMemory) throws(PageTableError) -> UInt64 {
        if let table = unsafe freeTables.popLast() {
            // Cleared when freed; cleared again once the guest, which can write the arena, has run.
            if unsafe !untouchedIsZero { memory.zero(at: table, count: 4096) }
            return table
        }
        guard unsafe next < end else { throw .outOfTableMemory }
        if unsafe next >= populatedEnd && next - base >= Self.populateThreshold { populateAhead(in: memory) }
        let table = unsafe next
        unsafe next &+= 4096
        if unsafe !untouchedIsZero { memory.zero(at: table, count: 4096) }
        return table
    }

    /// Faults in the next stretch of the arena with one system call instead of one page fault per table:
    /// as many pages as are already in use, so a big map takes a handful of calls. Memory that was mapped
    /// populated needs none.
    @usableFromInline func populateAhead(in memory: GuestMemory) {
        let stretch = unsafe min(next - base, end - next)
        unsafe populatedEnd = unsafe next + stretch
        if !memory.isPopulated { unsafe memory.populate(at: next, count: stretch) }
    }

    /// Takes back a table, if it is one this arena handed out and still holds (and not `root`): entries a
    /// guest rewrote can point anywhere in RAM, and only arena tables are ours to reuse (each at most once).
    @inlinable func free(_ table: UInt64, root: UInt64, in memory: GuestMemory) {
        guard table >= base, unsafe table < next, table != root, unsafe !freeTables.contains(table) else { return }
        memory.zero(at: table, count: 4096)
        unsafe freeTables.append(table)
    }
}
