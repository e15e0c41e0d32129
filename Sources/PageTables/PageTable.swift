/// The page-table engine: maps, unmaps, re-protects and translates virtual ranges in the tables a store
/// holds, and walks several address spaces that share tables.
///
/// Generic over the store (and through it the paging mode), so each use is specialised at compile time;
/// everything on the hot path is `@inlinable`, so the specialisation also happens across module boundaries.
///
/// ```swift
/// var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
/// try tables.map(.identity(0x20_0000, length: 0x40_0000, kind: .readWrite))   // two 2 MiB leaves
/// try tables.lookup(0x20_1234)?.physicalAddress                                // 0x201234
/// ```
///
/// Every operation walks the tables the same way: from the root down, one level at a time, visiting the
/// entries its range touches with an `EntryCursor`. What differs is a small handler per operation (what
/// map, unmap, protect and link do with one entry; what translate and the multi-space walk report).
public struct PageTable<Ops: TableOps> {
    /// The paging mode the tables are in.
    public typealias Mode = Ops.Mode

    /// The store holding the tables.
    public var ops: Ops
    /// Which large leaves `map` may write; 4 KiB leaves are always allowed.
    public let allowedLeafSizes: AllowedLeafSizes
    /// Which large leaves the processor walks as leaves: what decides how an entry with PS set is read.
    public let walkableLeafSizes: AllowedLeafSizes

    /// Wraps `ops`, whose root table must already exist.
    ///
    /// - Parameters:
    ///   - ops: the store holding the tables.
    ///   - allowedLeafSizes: the large leaves ``map(_:)`` may write. Never allow a size the processor cannot
    ///     walk.
    ///   - walkableLeafSizes: the large leaves the processor treats as leaves (amd64: 2 MiB always, 1 GiB
    ///     with CPUID Page1GB; i686: 4 MiB only with CR4.PSE). By default the allowed sizes, plus 2 MiB on
    ///     amd64. A PS entry of another size is what the CPU makes of it: a reserved-bit fault on amd64
    ///     (``PageTableError/malformedEntry(virtualAddress:level:entry:)``), an ordinary table reference on
    ///     i686 without PSE.
    @inlinable
    public init(ops: Ops, allowedLeafSizes: AllowedLeafSizes, walkableLeafSizes: AllowedLeafSizes? = nil) {
        self.ops = ops
        self.allowedLeafSizes = allowedLeafSizes
        self.walkableLeafSizes =
            walkableLeafSizes ?? allowedLeafSizes.union(Mode.architecture == .amd64 ? .size2M : [])
    }

    /// The size of the large leaf `entry` maps, or `nil` when it references a table, as the processor reads
    /// it.
    /// - Parameters:
    ///   - entry: a present entry.
    ///   - level: the level of the table holding it (above 0).
    ///   - virtualAddress: the linear address the entry maps first (for the error).
    /// - Throws: ``PageTableError/malformedEntry(virtualAddress:level:entry:)`` for PS where the CPU faults.
    @inlinable
    func largeLeafSize(of entry: UInt64, level: Int, virtualAddress: UInt64) throws(PageTableError) -> LeafSize? {
        guard entry & EntryBits.pageSize != 0 else { return nil }
        if let size = Mode.largeLeaf(atLevel: level) {
            if walkableLeafSizes.allows(size) { return size }
            if Mode.architecture == .i686 { return nil }  // without CR4.PSE the CPU ignores PS
        }
        throw .malformedEntry(virtualAddress: Mode.canonical(virtualAddress), level: level, entry: entry)
    }

    /// The physical address of the root table: the value for CR3.
    @inlinable public var rootPhysicalAddress: UInt64 { ops.physicalAddress(of: ops.root) }

    /// Whether the processor must run with CR4.PSE (bit 4) set: true on i686 when 4 MiB leaves are allowed.
    @inlinable public var requiresPageSizeExtension: Bool {
        Mode.architecture == .i686 && allowedLeafSizes.contains(.size4M)
    }

    // MARK: - Operations

    /// Maps `mapping`, creating or overwriting every entry in its range (``MappingKind/unmapped`` unmaps).
    ///
    /// Uses the largest allowed leaf wherever virtual address, physical address and the remaining length
    /// allow; splits a large leaf that the range covers only in part, keeping its other pages as they were.
    /// - Parameter mapping: what to map; bases and length multiples of 4 KiB.
    /// - Throws: a ``PageTableError`` for misaligned or out-of-space ranges, or a full arena.
    @inlinable
    public mutating func map(_ mapping: Mapping) throws(PageTableError) {
        try map(mapping, leafSizes: allowedLeafSizes)
    }

    /// Maps `mapping` with no leaf larger than `leafSizes` allows (and ``allowedLeafSizes`` allows too).
    ///
    /// A rebuilder passes the size each leaf had (`AllowedLeafSizes(only: translation.leafSize)`), so leaves
    /// come back as they were instead of merging into larger ones, and the tables under them stay tables
    /// (which ``linkShared(_:builtRoots:)`` may need to link to).
    /// - Parameters:
    ///   - mapping: what to map; bases and length multiples of 4 KiB.
    ///   - leafSizes: the large leaves this call may write.
    /// - Throws: as ``map(_:)``.
    @inlinable
    public mutating func map(_ mapping: Mapping, leafSizes: AllowedLeafSizes) throws(PageTableError) {
        if case .unmapped = mapping.kind {
            return try unmap(virtualBase: mapping.virtualBase, length: mapping.length)
        }
        guard let (first, last) = try Self.checkedRange(mapping.virtualBase, mapping.length) else { return }
        try Self.checkPhysical(mapping.physicalBase, mapping.length)
        let editor = MapEditor<Mode>(
            physicalDelta: mapping.physicalBase &- first,
            flags: Self.leafFlags(mapping.kind, user: mapping.userAccessible),
            addsUserAccess: mapping.userAccessible, leafSizes: allowedLeafSizes.intersection(leafSizes))
        try edit(editor, first: first, last: last)
    }

    /// Clears every entry in `[virtualBase, virtualBase + length)`, splitting large leaves covered in part,
    /// and gives tables that become empty back to the ops (the root is kept).
    /// - Parameters:
    ///   - virtualBase: the first address; a multiple of 4 KiB.
    ///   - length: bytes to unmap; a multiple of 4 KiB.
    /// - Throws: a ``PageTableError`` for misaligned or out-of-space ranges, or (when a large leaf must be
    ///   split) a full arena.
    @inlinable
    public mutating func unmap(virtualBase: UInt64, length: UInt64) throws(PageTableError) {
        guard let (first, last) = try Self.checkedRange(virtualBase, length) else { return }
        try edit(UnmapEditor<Mode>(), first: first, last: last)
    }

    /// Changes the kind (and U/S) of every present page in the range, keeping its frames; absent pages stay
    /// absent. ``MappingKind/unmapped`` unmaps.
    /// - Parameters:
    ///   - virtualBase: the first address; a multiple of 4 KiB.
    ///   - length: bytes to change; a multiple of 4 KiB.
    ///   - kind: the new permissions.
    ///   - userAccessible: whether user mode may access the pages.
    /// - Throws: as ``unmap(virtualBase:length:)``.
    @inlinable
    public mutating func protect(
        virtualBase: UInt64, length: UInt64, kind: MappingKind, userAccessible: Bool = false
    ) throws(PageTableError) {
        if case .unmapped = kind { return try unmap(virtualBase: virtualBase, length: length) }
        guard let (first, last) = try Self.checkedRange(virtualBase, length) else { return }
        let editor = ProtectEditor<Mode>(
            flags: Self.leafFlags(kind, user: userAccessible), addsUserAccess: userAccessible)
        try edit(editor, first: first, last: last)
    }

    // MARK: - Entry encoding

    /// The flags of a leaf of `kind` (PS not included): P, A and D always; R/W, U/S, NX and the
    /// copy-on-write marker as the kind says.
    @inlinable
    static func leafFlags(_ kind: MappingKind, user: Bool) -> UInt64 {
        var flags = EntryBits.present | EntryBits.accessed | EntryBits.dirty
        if user { flags |= EntryBits.userAccessible }
        switch kind {
        case .basic(let writable, let executable):
            if writable { flags |= EntryBits.writable }
            if !executable { flags |= Mode.executeDisableBit }
        case .copyOnWrite(let executable):
            flags |= EntryBits.copyOnWrite
            if !executable { flags |= Mode.executeDisableBit }
        case .unmapped:
            return 0
        }
        return flags
    }

    /// Decodes the kind of a present leaf entry. R/W wins over the copy-on-write marker: a writable page is
    /// writable whatever software bits say.
    @inlinable
    static func kind(ofLeaf entry: UInt64) -> MappingKind {
        let executable = entry & Mode.executeDisableBit == 0
        if entry & EntryBits.writable != 0 { return .basic(writable: true, executable: executable) }
        if entry & EntryBits.copyOnWrite != 0 { return .copyOnWrite(executable: executable) }
        return .basic(writable: false, executable: executable)
    }

    // MARK: - Range checks

    @inlinable
    static func checkedRange(_ virtualBase: UInt64, _ length: UInt64, aligned: Bool = true) throws(PageTableError)
        -> (UInt64, UInt64)?
    {
        try Mode.checkedRange(virtualBase, length, aligned: aligned)
    }

    @inlinable
    static func checkPhysical(_ physicalBase: UInt64, _ length: UInt64) throws(PageTableError) {
        try Mode.checkPhysical(physicalBase, length)
    }
}
