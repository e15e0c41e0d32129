/// The entries of one table that a linear range touches, in address order: the cursor every walk in the
/// engine is built on (map, unmap, protect and link descend with it; translate and the multi-space walk
/// read with it).
///
/// A table at `level` maps `entriesPerTable` blocks of `span` bytes from `tableBase` on. For a range
/// `[first, last]` inside that, the cursor yields one ``EntrySlot`` per entry the range touches, holding the
/// part of the range inside the entry: its `start` is `first` for the first entry (so it may be unaligned)
/// and the entry's base after that; its `end` is `last` for the final entry and the entry's last address
/// before. Addresses are linear (amd64: bit 47 not sign-extended), so every block lies below the top of the
/// space and `base + span - 1` never wraps.
@usableFromInline
struct EntryCursor<Mode: PagingMode> {
    /// The level of the table: 0 for a page table.
    @usableFromInline let level: Int
    /// The linear address the table's first entry maps.
    @usableFromInline let tableBase: UInt64
    /// First linear address of the range inside this table.
    @usableFromInline let first: UInt64
    /// Last linear address of the range inside this table.
    @usableFromInline let last: UInt64
    /// The entry ``next()`` yields next.
    @usableFromInline var index: Int
    /// The last entry the range touches.
    @usableFromInline let lastIndex: Int

    /// A cursor over the entries of the table at `level` mapping `tableBase` that `[first, last]` touches.
    ///
    /// - Parameters:
    ///   - level: the table's level (0 for a page table, `levelCount - 1` for the root).
    ///   - tableBase: the linear address the table's first entry maps.
    ///   - first: the first linear address of the range; not below `tableBase`.
    ///   - last: the last linear address of the range; not below `first`, inside the table's span.
    @inlinable @inline(__always)
    init(level: Int, tableBase: UInt64, first: UInt64, last: UInt64) {
        let shift = UInt64(Mode.shift(ofLevel: level))
        let indexMask = UInt64(Mode.entriesPerTable &- 1)
        self.level = level
        self.tableBase = tableBase
        self.first = first
        self.last = last
        index = Int(truncatingIfNeeded: (first &>> shift) & indexMask)
        lastIndex = Int(truncatingIfNeeded: (last &>> shift) & indexMask)
    }

    /// How far the address shifts right to give this level's index.
    @inlinable @inline(__always)
    var shift: UInt64 { UInt64(Mode.shift(ofLevel: level)) }

    /// Bytes one entry maps.
    @inlinable @inline(__always)
    var span: UInt64 { 1 &<< shift }

    /// Entries left to yield.
    @inlinable @inline(__always)
    var remaining: Int { lastIndex &- index &+ 1 }

    /// Whether the range covers every entry of the table.
    @inlinable @inline(__always)
    var coversTable: Bool {
        first == tableBase && last == tableBase &+ ((span &<< UInt64(Mode.indexBits)) &- 1)
    }

    /// The entry at `index` with the part of the range inside it; `index` lies between the cursor's first
    /// and last entries.
    @inlinable @inline(__always)
    func slot(_ index: Int) -> EntrySlot {
        let base = tableBase &+ (UInt64(truncatingIfNeeded: index) &<< shift)
        let entryLast = base &+ (span &- 1)
        let start = max(first, base)
        let end = min(last, entryLast)
        return EntrySlot(
            index: index, byteOffset: index &* Mode.entryByteCount, base: base, start: start, end: end,
            coversEntry: start == base && end == entryLast)
    }

    /// The next entry the range touches, or `nil` after the last.
    @inlinable @inline(__always)
    mutating func next() -> EntrySlot? {
        guard index <= lastIndex else { return nil }
        let slot = slot(index)
        index &+= 1
        return slot
    }

    /// Passes over `count` entries without yielding them (after a run was handled at once).
    @inlinable @inline(__always)
    mutating func skip(_ count: Int) { index &+= count }

    /// How many entries from `slot` on (`slot` included) the range covers whole; `slot` must start at its
    /// entry's base.
    @inlinable @inline(__always)
    func wholeEntries(from slot: EntrySlot) -> Int {
        min(lastIndex &- slot.index &+ 1, Int(truncatingIfNeeded: (last &- slot.start &+ 1) &>> shift))
    }
}

/// One entry a range touches, as ``EntryCursor`` yields it.
@usableFromInline
struct EntrySlot {
    /// The entry's index in its table.
    @usableFromInline let index: Int
    /// The entry's byte offset in its table (what ``TableReader/entryAddress(in:byteOffset:)`` takes).
    @usableFromInline let byteOffset: Int
    /// The first linear address the entry maps.
    @usableFromInline let base: UInt64
    /// The first address of the range inside the entry: `base`, or the range's start if that is later.
    @usableFromInline let start: UInt64
    /// The last address of the range inside the entry: the entry's last, or the range's end if earlier.
    @usableFromInline let end: UInt64
    /// Whether the range covers the whole entry.
    @usableFromInline let coversEntry: Bool

    @inlinable @inline(__always)
    init(index: Int, byteOffset: Int, base: UInt64, start: UInt64, end: UInt64, coversEntry: Bool) {
        self.index = index
        self.byteOffset = byteOffset
        self.base = base
        self.start = start
        self.end = end
        self.coversEntry = coversEntry
    }
}
