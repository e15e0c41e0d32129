/// The page-table engine: maps, unmaps, re-protects and translates virtual ranges in the tables an
/// ops value holds.
///
/// Generic over the ops (and through them the paging mode), so each use is specialised at compile time;
/// everything on the hot path is `@inlinable`, so the specialisation also happens across module boundaries.
///
/// ```swift
/// var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
/// try tables.map(.identity(0x20_0000, length: 0x40_0000, kind: .readWrite))   // two 2 MiB leaves
/// try tables.lookup(0x20_1234)?.physicalAddress                                // 0x201234
/// ```
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
    /// - Parameter walkableLeafSizes: the large leaves the processor treats as leaves (amd64: 2 MiB always,
    ///   1 GiB with CPUID Page1GB; i686: 4 MiB only with CR4.PSE). By default the allowed sizes, plus 2 MiB
    ///   on amd64. A PS entry of another size is what the CPU makes of it: a reserved-bit fault on amd64
    ///   (``PageTableError/malformedEntry(virtualAddress:level:entry:)``), an ordinary table reference on
    ///   i686 without PSE.
    @inlinable
    public init(ops: Ops, allowedLeafSizes: AllowedLeafSizes, walkableLeafSizes: AllowedLeafSizes? = nil) {
        self.ops = ops
        self.allowedLeafSizes = allowedLeafSizes
        self.walkableLeafSizes =
            walkableLeafSizes ?? allowedLeafSizes.union(Mode.architecture == .amd64 ? .size2M : [])
    }

    /// The size of the large leaf `entry` (present, at `level` > 0) maps, or `nil` when it references a
    /// table, as the processor reads it.
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
    /// - Throws: a ``PageTableError`` for misaligned or out-of-space ranges, or a full arena.
    @inlinable
    public mutating func map(_ mapping: Mapping) throws(PageTableError) {
        if case .unmapped = mapping.kind {
            return try unmap(virtualBase: mapping.virtualBase, length: mapping.length)
        }
        try map(mapping, flags: Self.leafFlags(mapping.kind, user: mapping.userAccessible))
    }

    @inlinable
    mutating func map(_ mapping: Mapping, flags: UInt64) throws(PageTableError) {
        guard let (first, last) = try Self.checkedRange(mapping.virtualBase, mapping.length) else { return }
        try Self.checkPhysical(mapping.physicalBase, mapping.length)
        let delta = mapping.physicalBase &- first
        try run(.map(physicalDelta: delta, flags: flags, user: mapping.userAccessible), first: first, last: last)
    }

    /// Clears every entry in `[virtualBase, virtualBase + length)`, splitting large leaves covered in part,
    /// and gives tables that become empty back to the ops (the root is kept).
    @inlinable
    public mutating func unmap(virtualBase: UInt64, length: UInt64) throws(PageTableError) {
        guard let (first, last) = try Self.checkedRange(virtualBase, length) else { return }
        try run(.unmap, first: first, last: last)
    }

    /// Changes the kind (and U/S) of every present page in the range, keeping its frames; absent pages stay
    /// absent. ``MappingKind/unmapped`` unmaps.
    @inlinable
    public mutating func protect(
        virtualBase: UInt64, length: UInt64, kind: MappingKind, userAccessible: Bool = false
    ) throws(PageTableError) {
        if case .unmapped = kind { return try unmap(virtualBase: virtualBase, length: length) }
        guard let (first, last) = try Self.checkedRange(virtualBase, length) else { return }
        try run(
            .protect(flags: Self.leafFlags(kind, user: userAccessible), user: userAccessible), first: first, last: last)
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

// MARK: - The mutating walk

/// What a mutating walk does at the leaves.
@usableFromInline
enum Operation {
    /// Write leaves; the physical address of linear address `x` is `x &+ physicalDelta`.
    case map(physicalDelta: UInt64, flags: UInt64, user: Bool)
    /// Clear leaves and free tables that become empty.
    case unmap
    /// Rewrite present leaves with `flags`, keeping frames.
    case protect(flags: UInt64, user: Bool)

    @inlinable var user: Bool {
        switch self {
        case .map(_, _, let user), .protect(_, let user): user
        case .unmap: false
        }
    }
}

extension PageTable {
    @inlinable
    mutating func run(_ operation: Operation, first: UInt64, last: UInt64) throws(PageTableError) {
        let root = ops.root
        let newRoot = try apply(
            operation, level: Mode.levelCount - 1, table: root, tableBase: 0, first: first, last: last, empty: false)
        if newRoot != root { ops.replaceRoot(with: newRoot) }
    }

    /// Applies `operation` to the linear range `[first, last]`, which lies inside the span of `table`
    /// (a table at `level` whose first entry maps `tableBase`). `empty` says the table was just allocated
    /// (all zero), so its old entries need not be read.
    ///
    /// - Returns: where `table` lives afterwards: itself, or its copy if a write moved it. The caller then
    ///   rewrites its own entry, which may move the caller in turn (the ancestor chain, up to the root).
    @inlinable
    mutating func apply(
        _ operation: Operation, level: Int, table: Ops.TableAddress, tableBase: UInt64, first: UInt64, last: UInt64,
        empty: Bool
    ) throws(PageTableError) -> Ops.TableAddress {
        var table = table
        let shift = UInt64(Mode.shift(ofLevel: level))
        let span: UInt64 = 1 &<< shift
        let indexMask = UInt64(Mode.entriesPerTable &- 1)
        let entryBytes = Mode.entryByteCount
        var index = Int(truncatingIfNeeded: (first &>> shift) & indexMask)
        let lastIndex = Int(truncatingIfNeeded: (last &>> shift) & indexMask)

        if level == 0 {
            let count = lastIndex &- index &+ 1
            switch operation {
            case .map(let delta, let flags, _):
                if let moved = ops.writeEntries(
                    in: table, byteOffset: index &* entryBytes, count: count, first: (first &+ delta) | flags,
                    step: span)
                {
                    table = ops.relocatedTable(moved)
                }
            case .unmap:
                if let moved = ops.writeEntries(
                    in: table, byteOffset: index &* entryBytes, count: count, first: 0, step: 0)
                {
                    table = ops.relocatedTable(moved)
                }
            case .protect(let flags, _):
                while index <= lastIndex {
                    let old = ops.readEntry(at: ops.entryAddress(in: table, byteOffset: index &* entryBytes))
                    if old & EntryBits.present != 0 {
                        let new = (old & Mode.frameAddressMask) | flags
                        if new != old, let moved = ops.writeEntry(in: table, byteOffset: index &* entryBytes, new) {
                            table = ops.relocatedTable(moved)
                        }
                    }
                    index &+= 1
                }
            }
            return table
        }

        let largeLeaf = Mode.largeLeaf(atLevel: level)
        while index <= lastIndex {
            let entryBase = tableBase &+ (UInt64(index) &<< shift)
            let entryLast = entryBase &+ (span &- 1)
            let start = max(first, entryBase)
            let end = min(last, entryLast)
            let covered = start == entryBase && end == entryLast
            let offset = index &* entryBytes
            let old = empty ? 0 : ops.readEntry(at: ops.entryAddress(in: table, byteOffset: offset))
            let present = old & EntryBits.present != 0
            var isLeaf = false
            if present { isLeaf = try largeLeafSize(of: old, level: level, virtualAddress: entryBase) != nil }

            switch operation {
            case .map(let delta, let flags, _):
                if covered, let size = largeLeaf, allowedLeafSizes.allows(size), (start &+ delta) & (span &- 1) == 0 {
                    // A run of large leaves: every entry from here that the range covers whole.
                    let whole = Int(truncatingIfNeeded: (last &- start &+ 1) &>> shift)
                    let count = min(lastIndex &- index &+ 1, whole)
                    if !empty {
                        for i in index..<(index &+ count) {
                            let replaced =
                                i == index
                                ? old : ops.readEntry(at: ops.entryAddress(in: table, byteOffset: i &* entryBytes))
                            freeSubtree(ofEntry: replaced, level: level)
                        }
                    }
                    if let moved = ops.writeEntries(
                        in: table, byteOffset: offset, count: count,
                        first: (start &+ delta) | flags | EntryBits.pageSize, step: span)
                    {
                        table = ops.relocatedTable(moved)
                    }
                    index &+= count
                    continue
                }
            case .unmap:
                if !present {
                    index &+= 1
                    continue
                }
                if covered {
                    freeSubtree(ofEntry: old, level: level)
                    if let moved = ops.writeEntry(in: table, byteOffset: offset, 0) {
                        table = ops.relocatedTable(moved)
                    }
                    index &+= 1
                    continue
                }
            case .protect(let flags, _):
                if !present {
                    index &+= 1
                    continue
                }
                if isLeaf && covered {
                    let new = (old & Mode.largeFrameMask(largeLeaf!)) | flags | EntryBits.pageSize
                    if new != old, let moved = ops.writeEntry(in: table, byteOffset: offset, new) {
                        table = ops.relocatedTable(moved)
                    }
                    index &+= 1
                    continue
                }
            }

            // Descend: into the existing table, a split of the large leaf, or a new table.
            let child: Ops.TableAddress
            let fresh: Bool
            var allocated = false
            if isLeaf {
                child = try split(leaf: old, level: level)
                fresh = true
            } else if present {
                guard let existing = ops.table(atPhysicalAddress: old & Mode.frameAddressMask) else {
                    throw .entryOutsideTableMemory(virtualAddress: Mode.canonical(start), level: level, entry: old)
                }
                child = existing
                fresh = false
            } else {
                child = try ops.allocateTable()
                fresh = true
                allocated = true
            }
            let updated: Ops.TableAddress
            do {
                updated = try apply(
                    operation, level: level &- 1, table: child, tableBase: entryBase, first: start, last: end,
                    empty: allocated)
            } catch {
                // A fresh table is not linked yet: give it (and whatever it grew) back, leaving the entry as it was.
                if fresh { freeSubtree(table: child, level: level &- 1) }
                throw error
            }
            var new = ops.physicalAddress(of: updated) | EntryBits.intermediate
            // Keep U/S of what was there: a table's, or a split large leaf's (its other pages keep it).
            if present { new |= old & EntryBits.userAccessible }
            if operation.user { new |= EntryBits.userAccessible }
            if case .unmap = operation, isEmpty(updated) {
                ops.freeTable(updated)
                new = 0
            }
            if new != old, let moved = ops.writeEntry(in: table, byteOffset: offset, new) {
                table = ops.relocatedTable(moved)
            }
            index &+= 1
        }
        return table
    }

    /// A new table at `level - 1` that maps exactly what the large leaf `leaf` at `level` maps, with the same
    /// flags: 4 KiB leaves, or large leaves of the next size down (1 GiB -> 2 MiB).
    @inlinable
    mutating func split(leaf: UInt64, level: Int) throws(PageTableError) -> Ops.TableAddress {
        let frame = leaf & Mode.largeFrameMask(Mode.largeLeaf(atLevel: level)!)
        var flags = leaf & ~Mode.frameAddressMask
        if level == 1 { flags &= ~EntryBits.pageSize }  // bit 7 of a PTE is PAT, not PS
        let table = try ops.allocateTable()
        let childSpan: UInt64 = 1 << UInt64(Mode.shift(ofLevel: level &- 1))
        if let moved = ops.writeEntries(
            in: table, byteOffset: 0, count: Mode.entriesPerTable, first: frame | flags, step: childSpan)
        {
            return ops.relocatedTable(moved)
        }
        return table
    }

    /// Whether no entry of `table` is present.
    @inlinable
    func isEmpty(_ table: Ops.TableAddress) -> Bool {
        var offset = 0
        let end = Mode.entriesPerTable &* Mode.entryByteCount
        while offset < end {
            if ops.readEntry(at: ops.entryAddress(in: table, byteOffset: offset)) & EntryBits.present != 0 {
                return false
            }
            offset &+= Mode.entryByteCount
        }
        return true
    }

    /// Frees the table `entry` references (and everything below it), if it references one.
    @inlinable
    mutating func freeSubtree(ofEntry entry: UInt64, level: Int) {
        guard level > 0, entry & EntryBits.present != 0,
            (try? largeLeafSize(of: entry, level: level, virtualAddress: 0)) == .some(nil),
            let child = ops.table(atPhysicalAddress: entry & Mode.frameAddressMask)
        else { return }
        freeSubtree(table: child, level: level &- 1)
    }

    /// Frees `table`, a table at `level`, after freeing the tables its entries reference.
    @inlinable
    mutating func freeSubtree(table: Ops.TableAddress, level: Int) {
        if level > 0 {
            var offset = 0
            let end = Mode.entriesPerTable &* Mode.entryByteCount
            while offset < end {
                freeSubtree(ofEntry: ops.readEntry(at: ops.entryAddress(in: table, byteOffset: offset)), level: level)
                offset &+= Mode.entryByteCount
            }
        }
        ops.freeTable(table)
    }
}
