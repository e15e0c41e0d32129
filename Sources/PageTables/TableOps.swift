/// The read side of a page-table store: how the engine finds and reads tables, whatever holds them
/// (an array in a test, live guest RAM, a snapshot).
///
/// A `TableAddress` names a table *or* an entry inside one (``entryAddress(in:byteOffset:)``), as the seed's
/// `TableAddr` does; for guest RAM it is simply the guest-physical address.
public protocol TableReader {
    /// The paging mode whose entries this store holds (fixes the entry width).
    associatedtype Mode: PagingMode
    /// How a table, or an entry within it, is addressed.
    associatedtype TableAddress: Equatable

    /// The root table (PML4 on amd64, page directory on i686).
    var root: TableAddress { get }

    /// The address of the entry `byteOffset` bytes into `table`.
    func entryAddress(in table: TableAddress, byteOffset: Int) -> TableAddress

    /// Reads one entry, zero-extended to 64 bits. `address` comes from ``entryAddress(in:byteOffset:)`` of a
    /// table this store handed out, so it is inside the store.
    func readEntry(at address: TableAddress) -> UInt64

    /// The physical address the CPU uses for `table` (what goes into CR3 or a parent entry).
    func physicalAddress(of table: TableAddress) -> UInt64

    /// The table at physical address `physicalAddress`, or `nil` if a whole table there is not inside this
    /// store's memory. Walkers call it on entries read from memory a guest may have scribbled on.
    func table(atPhysicalAddress physicalAddress: UInt64) -> TableAddress?
}

/// The write side of a page-table store.
///
/// Movability is a type-level policy, carried by `Relocation`:
/// - in-place stores (``InPlaceTableOps``) set `Relocation == Never`, so a write *cannot* report a move and
///   the engine's parent-rewriting code folds away;
/// - movable stores (``MovableTableOps``) set `Relocation == TableAddress`: a write may answer "this table now
///   lives at X" (its tables live in a read-only snapshot and are copied on first write); the engine then
///   rewrites the parent entry, which may move the parent in turn, up to ``replaceRoot(with:)``.
public protocol TableOps: TableReader {
    /// What a write returns when it had to move the table: `Never` for in-place stores.
    associatedtype Relocation

    /// Allocates a zero-filled table.
    /// - Throws: ``PageTableError/outOfTableMemory`` when no table is left.
    mutating func allocateTable() throws(PageTableError) -> TableAddress

    /// Gives back a table that the engine has unlinked (after `unmap` emptied it, or a leaf replaced it).
    mutating func freeTable(_ table: TableAddress)

    /// Writes one entry (truncated to the mode's entry width) `byteOffset` bytes into `table`.
    /// - Returns: `nil` if the table stayed where it was; otherwise the table's new address, at which the
    ///   write was made.
    mutating func writeEntry(in table: TableAddress, byteOffset: Int, _ value: UInt64) -> Relocation?

    /// Writes `count` consecutive entries from `byteOffset` in `table`: `first`, `first + step`, ...
    /// The engine uses it for runs of leaves; stores over raw memory implement it as one bounds check and a
    /// tight loop. Same return as ``writeEntry(in:byteOffset:_:)``.
    mutating func writeEntries(in table: TableAddress, byteOffset: Int, count: Int, first: UInt64, step: UInt64)
        -> Relocation?

    /// Makes `table` the root (after the old root moved).
    mutating func replaceRoot(with table: TableAddress)

    /// The table a relocation names.
    func relocatedTable(_ relocation: Relocation) -> TableAddress
}

extension TableOps {
    /// Default: one ``writeEntry(in:byteOffset:_:)`` per entry, following the table if it moves.
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

/// Table ops that always write in place: the seed's `MayNotMoveTable`.
public protocol InPlaceTableOps: TableOps where Relocation == Never {}

extension InPlaceTableOps {
    @inlinable public func relocatedTable(_ relocation: Never) -> TableAddress {}
}

/// Table ops whose tables may move on write: the seed's `MayMoveTable`.
public protocol MovableTableOps: TableOps where Relocation == TableAddress {}

extension MovableTableOps {
    @inlinable public func relocatedTable(_ relocation: TableAddress) -> TableAddress { relocation }
}
