/// What a visitor of a walk wants next.
public enum WalkDecision: Hashable, Sendable {
    /// Go on to the next leaf.
    case `continue`
    /// End the walk here: no further leaf is read.
    case stop
}

// The read walk: translate, lookup and the multi-space walk.
//
// It descends with the same `EntryCursor` as the mutating walk, but iteratively, one frame per level on the
// stack, so the visitor's closures are inlined into the loops (a recursive walk would call them
// indirectly for every leaf). Page tables are read in one `readEntries` run each.

/// One level of a read walk: the table being read, the cursor over it, and what the entries above allow.
@usableFromInline
struct ReadFrame<Ops: TableReader> {
    @usableFromInline var table: Ops.TableAddress
    @usableFromInline var cursor: EntryCursor<Ops.Mode>
    /// R/W and U/S of every entry above, ANDed.
    @usableFromInline var allowed: UInt64
    /// NX of every entry above, ORed.
    @usableFromInline var denied: UInt64

    @inlinable @inline(__always)
    init(table: Ops.TableAddress, cursor: EntryCursor<Ops.Mode>, allowed: UInt64, denied: UInt64) {
        self.table = table
        self.cursor = cursor
        self.allowed = allowed
        self.denied = denied
    }
}

extension PageTable {
    /// Calls `visit` once per present leaf in `[virtualBase, virtualBase + length)`, in address order, with
    /// the part of the leaf inside the range (amd64 addresses sign-extended back to canonical form), until
    /// `visit` returns ``WalkDecision/stop``: a host printing a guest's tables stops after a budget this way.
    ///
    /// Permissions are the CPU's: R/W and U/S of the leaf ANDed with those of every entry above it, NX ORed.
    ///
    /// Safe over tables a guest has scribbled on: every table reference is checked with
    /// ``TableReader/table(atPhysicalAddress:)`` before it is read, so the walk never reads outside the
    /// store's memory. Its cost is bounded by `maximumTables`: tables the host built are each entered once,
    /// while self-referencing tables would be entered again and again.
    /// - Parameters:
    ///   - virtualBase: the first address; any alignment.
    ///   - length: bytes to walk; any length.
    ///   - maximumTables: the most tables (below the root) the walk may enter.
    ///   - visit: takes each leaf; returns ``WalkDecision/stop`` to end the walk.
    /// - Returns: ``WalkDecision/stop`` if `visit` ended the walk, ``WalkDecision/continue`` if it ran to the
    ///   end of the range.
    /// - Throws: ``PageTableError/entryOutsideTableMemory(virtualAddress:level:entry:)`` or
    ///   ``PageTableError/malformedEntry(virtualAddress:level:entry:)`` for a bad entry,
    ///   ``PageTableError/walkTooLong(tables:)`` past `maximumTables`; range errors as for `map`, except that
    ///   `virtualBase` and `length` need no alignment.
    @inlinable @inline(__always) @discardableResult
    public func visitLeaves(
        virtualBase: UInt64, length: UInt64, maximumTables: Int = .max, _ visit: (Translation) -> WalkDecision
    ) throws(PageTableError) -> WalkDecision {
        guard let (first, last) = try Self.checkedRange(virtualBase, length, aligned: false) else { return .continue }
        var tablesEntered = 0
        return try walk(
            from: ops.root, first: first, last: last, maximumTables: maximumTables, tablesEntered: &tablesEntered,
            enter: { _, _, _ in true }, leaf: visit)
    }

    /// Calls `body` once per present leaf in `[virtualBase, virtualBase + length)`, in address order: the
    /// walk of ``visitLeaves(virtualBase:length:maximumTables:_:)`` run to the end of the range.
    /// - Parameters:
    ///   - virtualBase: the first address; any alignment.
    ///   - length: bytes to walk; any length.
    ///   - maximumTables: the most tables (below the root) the walk may enter.
    ///   - body: takes each leaf.
    /// - Throws: as ``visitLeaves(virtualBase:length:maximumTables:_:)``.
    @inlinable @inline(__always)
    public func forEachLeaf(
        virtualBase: UInt64, length: UInt64, maximumTables: Int = .max, _ body: (Translation) -> Void
    ) throws(PageTableError) {
        try visitLeaves(virtualBase: virtualBase, length: length, maximumTables: maximumTables) { leaf in
            body(leaf)
            return .continue
        }
    }

    /// One ``Translation`` per present leaf in the range, in address order.
    /// - Parameters:
    ///   - virtualBase: the first address; any alignment.
    ///   - length: bytes to translate; any length.
    ///   - maximumTables: the most tables (below the root) the walk may enter.
    /// - Throws: as ``visitLeaves(virtualBase:length:maximumTables:_:)``.
    @inlinable
    public func translate(virtualBase: UInt64, length: UInt64, maximumTables: Int = .max) throws(PageTableError)
        -> [Translation]
    {
        var result: [Translation] = []
        try forEachLeaf(virtualBase: virtualBase, length: length, maximumTables: maximumTables) {
            result.append($0)
        }
        return result
    }

    /// The translation of one address: its physical address, kind, U/S and leaf size, with `length` the
    /// bytes from `virtualAddress` to the end of its leaf; `nil` when it is not mapped.
    /// - Parameter virtualAddress: any address inside the mode's virtual space.
    /// - Throws: as ``visitLeaves(virtualBase:length:maximumTables:_:)``.
    @inlinable
    public func lookup(_ virtualAddress: UInt64) throws(PageTableError) -> Translation? {
        var found: Translation? = nil
        try visitLeaves(virtualBase: virtualAddress, length: 1) { leaf in
            found = leaf
            return .stop
        }
        guard var translation = found else { return nil }
        let leafEnd = (Mode.linear(virtualAddress) | (translation.leafSize.byteCount &- 1)) &+ 1
        translation.length = leafEnd &- Mode.linear(virtualAddress)
        return translation
    }

    /// The range as maximal runs: adjacent leaves with contiguous virtual and physical addresses and equal
    /// kind, U/S and leaf size merged into one ``Translation``.
    /// - Parameters:
    ///   - virtualBase: the first address; any alignment.
    ///   - length: bytes to translate; any length.
    ///   - maximumTables: the most tables (below the root) the walk may enter.
    /// - Throws: as ``visitLeaves(virtualBase:length:maximumTables:_:)``.
    @inlinable
    public func coalescedTranslate(virtualBase: UInt64, length: UInt64, maximumTables: Int = .max)
        throws(PageTableError) -> [Translation]
    {
        guard let (first, last) = try Self.checkedRange(virtualBase, length, aligned: false) else { return [] }
        var result: [Translation] = []
        var tablesEntered = 0
        _ = try walk(
            from: ops.root, first: first, last: last, maximumTables: maximumTables, tablesEntered: &tablesEntered,
            runs: true, enter: { _, _, _ in true }
        ) { leaf in
            // Runs of one page table arrive whole; join those that continue across tables and large leaves.
            if var previous = result.last, previous.continues(with: leaf) {
                previous.length &+= leaf.length
                result[result.count &- 1] = previous
            } else {
                result.append(leaf)
            }
            return .continue
        }
        return result
    }

    // MARK: - The walk

    /// Walks the tables under `root` over the linear range `[first, last]`: calls `leaf` for every present
    /// leaf, and `enter` before descending into a table, in address order.
    /// - Parameters:
    ///   - root: the table to start from.
    ///   - first: the first linear address.
    ///   - last: the last linear address; not below `first`.
    ///   - maximumTables: the most tables `tablesEntered` may reach.
    ///   - tablesEntered: tables entered so far, counted on across walks that share one budget.
    ///   - runs: whether 4 KiB leaves of one page table that continue one another (the next frame, the same
    ///     flags) come to `leaf` as one translation instead of one each.
    ///   - enter: called with a table's physical address, its level and the linear address its first entry
    ///     maps, after the reference was checked; returns `false` to skip the table (nothing below it is read).
    ///   - leaf: called with each leaf (or run); returns ``WalkDecision/stop`` to end the walk.
    /// - Returns: ``WalkDecision/stop`` if `leaf` stopped the walk.
    @inlinable @inline(__always)
    func walk(
        from root: Ops.TableAddress, first: UInt64, last: UInt64, maximumTables: Int, tablesEntered: inout Int,
        runs: Bool = false, enter: (_ physicalAddress: UInt64, _ level: Int, _ base: UInt64) -> Bool,
        leaf: (Translation) -> WalkDecision
    ) throws(PageTableError) -> WalkDecision {
        let top = Mode.levelCount &- 1
        let permissionBits = EntryBits.writable | EntryBits.userAccessible
        var frames = InlineArray<4, ReadFrame<Ops>>(
            repeating: ReadFrame(
                table: root, cursor: EntryCursor(level: top, tableBase: 0, first: first, last: last),
                allowed: permissionBits, denied: 0))
        var level = top
        descending: while true {
            if level == 0 {
                let decision = runs ? readRuns(frames[0], leaf) : readLeaves(frames[0], leaf)
                guard decision == .continue else { return .stop }
                level = 1
                continue
            }
            // Scan this table with its state in locals; leave the loop only to descend or when it is done.
            var cursor = frames[level].cursor
            let table = frames[level].table
            let allowed = frames[level].allowed
            let denied = frames[level].denied
            while let slot = cursor.next() {
                let entry = ops.readEntry(at: ops.entryAddress(in: table, byteOffset: slot.byteOffset))
                guard entry & EntryBits.present != 0 else { continue }
                if let size = try largeLeafSize(of: entry, level: level, virtualAddress: slot.base) {
                    let effective = (entry & ~(permissionBits & ~allowed)) | denied
                    let translation = Translation(
                        virtualAddress: Mode.canonical(slot.start),
                        physicalAddress: (effective & Mode.largeFrameMask(size)) &+ (slot.start &- slot.base),
                        length: slot.end &- slot.start &+ 1, kind: Self.kind(ofLeaf: effective),
                        userAccessible: effective & EntryBits.userAccessible != 0, leafSize: size)
                    guard leaf(translation) == .continue else { return .stop }
                    continue
                }
                let physical = entry & Mode.frameAddressMask
                guard let child = ops.table(atPhysicalAddress: physical) else {
                    throw .entryOutsideTableMemory(
                        virtualAddress: Mode.canonical(slot.start), level: level, entry: entry)
                }
                guard enter(physical, level &- 1, slot.base) else { continue }
                tablesEntered &+= 1
                guard tablesEntered <= maximumTables else { throw .walkTooLong(tables: maximumTables) }
                frames[level].cursor = cursor
                level &-= 1
                frames[level] = ReadFrame(
                    table: child,
                    cursor: EntryCursor(level: level, tableBase: slot.base, first: slot.start, last: slot.end),
                    allowed: allowed & entry, denied: denied | (entry & Mode.executeDisableBit))
                continue descending
            }
            if level == top { return .continue }
            level &+= 1
        }
    }

    /// Calls `leaf` for every present 4 KiB leaf of the page table in `frame`, reading its entries in one run.
    /// - Returns: ``WalkDecision/stop`` if `leaf` stopped the walk.
    @inlinable @inline(__always)
    func readLeaves(_ frame: ReadFrame<Ops>, _ leaf: (Translation) -> WalkDecision) -> WalkDecision {
        let cursor = frame.cursor
        let clear = (EntryBits.writable | EntryBits.userAccessible) & ~frame.allowed
        let set = frame.denied
        // Every leaf of one table shares its sign extension (amd64 bits 63:48).
        let high = Mode.canonical(cursor.tableBase) & ~(Mode.virtualSpaceSize &- 1)
        var base = cursor.tableBase &+ (UInt64(truncatingIfNeeded: cursor.index) &<< 12)
        var decision = WalkDecision.continue
        if cursor.coversTable {
            // Every leaf whole: no clamping.
            ops.readEntries(in: frame.table, byteOffset: 0, count: Mode.entriesPerTable) { raw in
                defer { base &+= 1 << 12 }
                guard raw & EntryBits.present != 0 else { return true }
                let entry = (raw & ~clear) | set
                decision = leaf(
                    Translation(
                        virtualAddress: base | high, physicalAddress: entry & Mode.frameAddressMask, length: 1 << 12,
                        kind: Self.kind(ofLeaf: entry), userAccessible: entry & EntryBits.userAccessible != 0,
                        leafSize: .size4K))
                return decision == .continue
            }
            return decision
        }
        let first = cursor.first
        let last = cursor.last
        ops.readEntries(in: frame.table, byteOffset: cursor.index &* Mode.entryByteCount, count: cursor.remaining) {
            raw in
            defer { base &+= 1 << 12 }
            guard raw & EntryBits.present != 0 else { return true }
            let entry = (raw & ~clear) | set
            let start = max(first, base)
            let end = min(last, base &+ 0xFFF)
            decision = leaf(
                Translation(
                    virtualAddress: start | high, physicalAddress: (entry & Mode.frameAddressMask) &+ (start &- base),
                    length: end &- start &+ 1, kind: Self.kind(ofLeaf: entry),
                    userAccessible: entry & EntryBits.userAccessible != 0, leafSize: .size4K))
            return decision == .continue
        }
        return decision
    }
}

extension PageTable {
    /// Calls `leaf` once per run of present 4 KiB leaves of the page table in `frame` that continue one
    /// another (each entry the one before plus 4 KiB: the next frame, the same flags), reading its entries in
    /// one run. One comparison per entry, where building a ``Translation`` per leaf and comparing those
    /// costs tens of instructions.
    /// - Returns: ``WalkDecision/stop`` if `leaf` stopped the walk.
    @inlinable @inline(__always)
    func readRuns(_ frame: ReadFrame<Ops>, _ leaf: (Translation) -> WalkDecision) -> WalkDecision {
        let cursor = frame.cursor
        let clear = (EntryBits.writable | EntryBits.userAccessible) & ~frame.allowed
        let set = frame.denied
        let high = Mode.canonical(cursor.tableBase) & ~(Mode.virtualSpaceSize &- 1)
        let first = cursor.first
        let last = cursor.last
        var base = cursor.tableBase &+ (UInt64(truncatingIfNeeded: cursor.index) &<< 12)
        var runBase: UInt64 = 0
        var runEntry: UInt64 = 0  // 0: no run (a present entry is never 0)
        var expected: UInt64 = 0
        var decision = WalkDecision.continue
        func flush() -> WalkDecision {
            guard runEntry != 0 else { return .continue }
            let start = max(first, runBase)
            let end = min(last, base &- 1)
            let translation = Translation(
                virtualAddress: start | high, physicalAddress: (runEntry & Mode.frameAddressMask) &+ (start &- runBase),
                length: end &- start &+ 1, kind: Self.kind(ofLeaf: runEntry),
                userAccessible: runEntry & EntryBits.userAccessible != 0, leafSize: .size4K)
            runEntry = 0
            return leaf(translation)
        }
        ops.readEntries(in: frame.table, byteOffset: cursor.index &* Mode.entryByteCount, count: cursor.remaining) {
            raw in
            defer { base &+= 1 << 12 }
            guard raw & EntryBits.present != 0 else {
                decision = flush()
                return decision == .continue
            }
            let entry = (raw & ~clear) | set
            if entry == expected {
                // A frame at the top of the physical space has no next frame: the carry must not match.
                expected = entry &+ (1 << 12)
                if expected & Mode.frameAddressMask == 0 { expected = 0 }
                return true
            }
            decision = flush()
            runBase = base
            runEntry = entry
            expected = entry &+ (1 << 12)
            if expected & Mode.frameAddressMask == 0 { expected = 0 }
            return decision == .continue
        }
        guard decision == .continue else { return decision }
        return flush()
    }
}

extension PageTable {
    /// The whole virtual space of the mode as (base, length) pairs: one range on i686, the two canonical
    /// halves on amd64. Handy for dumping everything.
    public static var virtualSpace: [(base: UInt64, length: UInt64)] {
        if Mode.virtualAddressBits == 48 {
            return [(0, 1 << 47), (0xFFFF_8000_0000_0000, 1 << 47)]
        }
        return [(0, Mode.virtualSpaceSize)]
    }
}
