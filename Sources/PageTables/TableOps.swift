/// The read side of a page-table store: how the engine finds and reads tables, whatever holds them
/// (an array in a test, live guest RAM, a snapshot).
///
/// A `TableAddress` names a table *or* an entry inside one (``entryAddress(in:byteOffset:)``); for guest RAM
/// it is simply the guest-physical address. See <doc:WritingATableOpsStore> for a worked example.
public protocol TableReader {
    /// The paging mode whose entries this store holds (fixes the entry width).
    associatedtype Mode: PagingMode
    /// How a table, or an entry within it, is addressed.
    associatedtype TableAddress: Equatable

    /// The root table (PML4 on amd64, page directory on i686).
    var root: TableAddress { get }

    /// The address of the entry `byteOffset` bytes into `table`.
    ///
    /// - Parameters:
    ///   - table: a table this store handed out.
    ///   - byteOffset: a multiple of the entry width, below 4,096.
    func entryAddress(in table: TableAddress, byteOffset: Int) -> TableAddress

    /// Reads one entry, zero-extended to 64 bits.
    ///
    /// - Parameter address: an address from ``entryAddress(in:byteOffset:)`` of a table this store handed
    ///   out, so it is inside the store.
    func readEntry(at address: TableAddress) -> UInt64

    /// Calls `body` with `count` consecutive entries of `table`, from `byteOffset` on, each zero-extended to
    /// 64 bits, until `body` returns `false`.
    ///
    /// The engine reads the leaves of a page table through it. Stores over raw memory implement it as one
    /// bounds check and a tight loop; the default reads one entry at a time with ``readEntry(at:)``.
    /// - Parameters:
    ///   - table: a table this store handed out.
    ///   - byteOffset: the offset of the first entry; the run ends inside the table.
    ///   - count: how many entries to read at most.
    ///   - body: takes each entry in order; returns `false` to read no further.
    func readEntries(in table: TableAddress, byteOffset: Int, count: Int, _ body: (UInt64) -> Bool)

    /// The physical address the CPU uses for `table` (what goes into CR3 or a parent entry).
    func physicalAddress(of table: TableAddress) -> UInt64

    /// The table at physical address `physicalAddress`, or `nil` if a whole table there is not inside this
    /// store's memory.
    ///
    /// Walkers call it on every table reference they read, before reading the table, because entries may
    /// come from memory a guest has scribbled on.
    func table(atPhysicalAddress physicalAddress: UInt64) -> TableAddress?
}

extension TableReader {
    /// Default: one ``readEntry(at:)`` per entry.
    /// - Parameters:
    ///   - table: a table this store handed out.
    ///   - byteOffset: the offset of the first entry; the run ends inside the table.
    ///   - count: how many entries to read at most.
    ///   - body: takes each entry in order; returns `false` to read no further.
    @inlinable
    public func readEntries(in table: TableAddress, byteOffset: Int, count: Int, _ body: (UInt64) -> Bool) {
        var offset = byteOffset
        for _ in 0..<count {
            guard body(readEntry(at: entryAddress(in: table, byteOffset: offset))) else { return }
            offset &+= Mode.entryByteCount
        }
    }
}

/// The write side of a page-table store.
///
/// Movability is a type-level policy, carried by `Relocation`:
/// - in-place stores (``InPlaceTableOps``) set `Relocation == Never`, so a write *cannot* report a move and
///   the engine's parent-rewriting code folds away;
/// - movable stores (``MovableTableOps``) set `Relocation == TableAddress`: a write may answer "this table now
///   lives at X" (for instance because its tables live in a read-only snapshot and are copied on first
///   write); the engine then rewrites the parent entry, which may move the parent in turn, up to
///   ``replaceRoot(with:)``.
public protocol TableOps: TableReader {
    /// What a write returns when it had to move the table: `Never` for in-place stores.
    associatedtype Relocation

    /// Allocates a zero-filled table.
    /// - Throws: ``PageTableError/outOfTableMemory`` when no table is left.
    mutating func allocateTable() throws(PageTableError) -> TableAddress

    /// Gives back a table that the engine has unlinked (after `unmap` emptied it, or a leaf replaced it).
    /// - Parameter table: a table this store handed out, no longer referenced by any entry the engine wrote.
    mutating func freeTable(_ table: TableAddress)

    /// Writes one entry (truncated to the mode's entry width).
    /// - Parameters:
    ///   - table: the table to write in.
    ///   - byteOffset: the entry's offset in `table`.
    ///   - value: the new entry.
    /// - Returns: `nil` if the table stayed where it was; otherwise the table's new address, at which the
    ///   write was made.
    mutating func writeEntry(in table: TableAddress, byteOffset: Int, _ value: UInt64) -> Relocation?

    /// Writes `count` consecutive entries: `first`, `first + step`, `first + 2 × step`, ...
    ///
    /// The engine writes runs of leaves through it. Stores over raw memory implement it as one bounds
    /// check and a tight loop; the default writes one entry at a time with ``writeEntry(in:byteOffset:_:)``.
    /// - Parameters:
    ///   - table: the table to write in.
    ///   - byteOffset: the offset of the first entry; the run ends inside the table.
    ///   - count: how many entries to write.
    ///   - first: the first entry's value.
    ///   - step: what each further entry adds to the one before.
    /// - Returns: as for ``writeEntry(in:byteOffset:_:)``: the table's new address if it moved.
    mutating func writeEntries(in table: TableAddress, byteOffset: Int, count: Int, first: UInt64, step: UInt64)
        -> Relocation?

    /// Makes `table` the root (after the old root moved, or to switch to another space in the store).
    mutating func replaceRoot(with table: TableAddress)

    /// The table a relocation names.
    /// - Parameter relocation: what a write returned.
    func relocatedTable(_ relocation: Relocation) -> TableAddress
}

extension TableOps {
    /// Default: one ``writeEntry(in:byteOffset:_:)`` per entry, following the table if it moves.
    /// - Parameters:
    ///   - table: the table to write in.
    ///   - byteOffset: the offset of the first entry; the run ends inside the table.
    ///   - count: how many entries to write.
    ///   - first: the first entry's value.
    ///   - step: what each further entry adds to the one before.
    /// - Returns: the table's last new address if a write moved it.
    @inlinable
    public mutating func writeEntries(
        in table: TableAddress, byteOffset: Int, count: Int, first: UInt64, step: UInt64
    ) -> Relocation? {
        var table = table
        var moved: Relocation? = nil
        var value = first
        var offset = byteOffset
        for _ in 0..<count {
            if let relocation = writeEntry(in: table, byteOffset: offset, value) {
                table = relocatedTable(relocation)
                moved = relocation
            }
            offset &+= Mode.entryByteCount
            value &+= step
        }
        return moved
    }
}

/// Table ops that always write in place: a write never moves a table.
public protocol InPlaceTableOps: TableOps where Relocation == Never {}

extension InPlaceTableOps {
    /// Never called: an in-place store cannot report a relocation.
    /// - Parameter relocation: a value that cannot exist.
    @inlinable public func relocatedTable(_ relocation: Never) -> TableAddress {}
}

/// Table ops whose tables may move on write: a write may answer with the table's new address.
public protocol MovableTableOps: TableOps where Relocation == TableAddress {}

extension MovableTableOps {
    /// The relocation is the new address itself.
    /// - Parameter relocation: the table's new address.
    @inlinable public func relocatedTable(_ relocation: TableAddress) -> TableAddress { relocation }
}
