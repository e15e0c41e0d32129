// The mutating walk: map, unmap, protect and link are one descent with a small handler each.
//
// The walk visits, level by level, the entries a range touches (an `EntryCursor` per table). Above the
// leaves it asks the handler what to do with each entry: keep it, replace it (and the entries after it) with
// new values, or descend into the table below, which the walk first finds, splits out of a large leaf, or
// allocates. At a page table it hands the handler the whole run of 4 KiB entries at once. On the way back up
// it rewrites the parent entry if the child table moved (movable stores), which may move the parent in
// turn, up to the root.

/// What a mutating walk does with one entry above the leaf level.
@usableFromInline
enum EntryEdit {
    /// Leave the entry as it is.
    case keep
    /// Write `first` into this entry and `first + step`, `first + 2 × step`, ... into the `count - 1` after
    /// it; the tables the old entries referenced are freed.
    case replace(count: Int, first: UInt64, step: UInt64)
    /// Descend into the table below the entry: the one it references, a split of the large leaf it holds, or
    /// a new table if it is absent.
    case descend
}

/// The part of map, unmap, protect or link that differs: what happens to the entries a range touches.
@usableFromInline
protocol TableEditor {
    associatedtype Mode: PagingMode

    /// Whether every table entry on the way down gets U/S: user pages need it at every level.
    var addsUserAccess: Bool { get }
    /// Whether a table that the walk leaves empty is freed and its entry cleared.
    var freesEmptyTables: Bool { get }

    /// What to do with one entry of a table above level 0.
    /// - Parameters:
    ///   - slot: the entry and the part of the range inside it.
    ///   - cursor: the cursor that yielded `slot` (for runs of entries).
    ///   - entry: the entry's current value (0 in a table just allocated).
    ///   - largeLeaf: the size of the large leaf `entry` holds, or `nil` if it is absent or references a table.
    func edit(_ slot: EntrySlot, of cursor: EntryCursor<Mode>, entry: UInt64, largeLeaf: LeafSize?) -> EntryEdit

    /// Rewrites the run of 4 KiB entries `cursor` covers in the page table `table`.
    /// - Returns: the table's new address if a write moved it.
    func editLeaves<Ops: TableOps>(in table: Ops.TableAddress, _ cursor: EntryCursor<Mode>, ops: inout Ops)
        -> Ops.Relocation? where Ops.Mode == Mode
}

extension PageTable {
    /// Runs `editor` over the linear range `[first, last]` from the root, and replaces the root if it moved.
    @inlinable
    mutating func edit<Editor: TableEditor>(_ editor: Editor, first: UInt64, last: UInt64) throws(PageTableError)
    where Editor.Mode == Mode {
        let root = ops.root
        let newRoot = try edit(
            editor, level: Mode.levelCount &- 1, table: root, tableBase: 0, first: first, last: last, zeroed: false)
        if newRoot != root { ops.replaceRoot(with: newRoot) }
    }

    /// Runs `editor` over the linear range `[first, last]` inside `table`, a table at `level` whose first entry
    /// maps `tableBase`.
    /// - Parameter zeroed: the table was just allocated, so every entry is 0 and need not be read.
    /// - Returns: where `table` lives afterwards: itself, or its copy if a write moved it. The caller then
    ///   rewrites its own entry, which may move the caller in turn.
    @inlinable
    mutating func edit<Editor: TableEditor>(
        _ editor: Editor, level: Int, table: Ops.TableAddress, tableBase: UInt64, first: UInt64, last: UInt64,
        zeroed: Bool
    ) throws(PageTableError) -> Ops.TableAddress where Editor.Mode == Mode {
        var table = table
        var cursor = EntryCursor<Mode>(level: level, tableBase: tableBase, first: first, last: last)
        if level == 0 {
            if let moved = editor.editLeaves(in: table, cursor, ops: &ops) { table = ops.relocatedTable(moved) }
            return table
        }
        while let slot = cursor.next() {
            let old = zeroed ? 0 : ops.readEntry(at: ops.entryAddress(in: table, byteOffset: slot.byteOffset))
            let present = old & EntryBits.present != 0
            let largeLeaf = present ? try largeLeafSize(of: old, level: level, virtualAddress: slot.base) : nil
            switch editor.edit(slot, of: cursor, entry: old, largeLeaf: largeLeaf) {
            case .keep:
                continue
            case .replace(let count, let first, let step):
                // Free what the replaced entries referenced (unless an entry keeps its value). Runs mostly
                // replace absent entries: one bulk read finds out whether any is present.
                if old & EntryBits.present != 0
                    || (!zeroed && count > 1 && anyPresent(in: table, byteOffset: slot.byteOffset, count: count))
                {
                    var value = first
                    for index in slot.index..<(slot.index &+ count) {
                        let replaced =
                            index == slot.index
                            ? old
                            : ops.readEntry(at: ops.entryAddress(in: table, byteOffset: index &* Mode.entryByteCount))
                        if replaced != value { freeSubtree(ofEntry: replaced, level: level) }
                        value &+= step
                    }
                }
                if count == 1 {
                    if first != old, let moved = ops.writeEntry(in: table, byteOffset: slot.byteOffset, first) {
                        table = ops.relocatedTable(moved)
                    }
                } else if let moved = ops.writeEntries(
                    in: table, byteOffset: slot.byteOffset, count: count, first: first, step: step)
                {
                    table = ops.relocatedTable(moved)
                }
                cursor.skip(count &- 1)
            case .descend:
                table = try descend(editor, level: level, table: table, slot: slot, entry: old, largeLeaf: largeLeaf)
            }
        }
        return table
    }

    /// Runs `editor` in the table below `entry` (found, split out of a large leaf, or allocated), then
    /// rewrites `entry` to reference it (or clears it, if the editor frees empty tables and it is empty).
    /// - Returns: where `table`, holding `entry`, lives afterwards.
    @inlinable @inline(__always)
    mutating func descend<Editor: TableEditor>(
        _ editor: Editor, level: Int, table: Ops.TableAddress, slot: EntrySlot, entry old: UInt64,
        largeLeaf: LeafSize?
    ) throws(PageTableError) -> Ops.TableAddress where Editor.Mode == Mode {
        let present = old & EntryBits.present != 0
        let child: Ops.TableAddress
        let unlinked: Bool  // a table of our own making, not yet referenced by any entry
        let zeroed: Bool
        if largeLeaf != nil {
            child = try split(leaf: old, level: level)
            unlinked = true
            zeroed = false
        } else if present {
            guard let existing = ops.table(atPhysicalAddress: old & Mode.frameAddressMask) else {
                throw .entryOutsideTableMemory(virtualAddress: Mode.canonical(slot.start), level: level, entry: old)
            }
            child = existing
            unlinked = false
            zeroed = false
        } else {
            child = try ops.allocateTable()
            unlinked = true
            zeroed = true
        }
        var updated = child
        do {
            if level == 1 {
                // A page table: straight to the handler's run of 4 KiB entries.
                let cursor = EntryCursor<Mode>(level: 0, tableBase: slot.base, first: slot.start, last: slot.end)
                if let moved = editor.editLeaves(in: child, cursor, ops: &ops) { updated = ops.relocatedTable(moved) }
            } else {
                updated = try edit(
                    editor, level: level &- 1, table: child, tableBase: slot.base, first: slot.start, last: slot.end,
                    zeroed: zeroed)
            }
        } catch {
            // Give back a table not linked yet (and whatever it grew), leaving the entry as it was.
            if unlinked { freeSubtree(table: child, level: level &- 1) }
            throw error
        }
        var new = ops.physicalAddress(of: updated) | EntryBits.intermediate
        // Keep U/S of what was there: a table's, or a split large leaf's (its other pages keep it).
        if present { new |= old & EntryBits.userAccessible }
        if editor.addsUserAccess { new |= EntryBits.userAccessible }
        if editor.freesEmptyTables && isEmpty(updated) {
            ops.freeTable(updated)
            new = 0
        }
        if new != old, let moved = ops.writeEntry(in: table, byteOffset: slot.byteOffset, new) {
            return ops.relocatedTable(moved)
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

    /// Whether any of the `count` entries of `table` from `byteOffset` on is present.
    @inlinable
    func anyPresent(in table: Ops.TableAddress, byteOffset: Int, count: Int) -> Bool {
        var found = false
        ops.readEntries(in: table, byteOffset: byteOffset, count: count) { entry in
            found = entry & EntryBits.present != 0
            return !found
        }
        return found
    }

    /// Whether no entry of `table` is present.
    @inlinable
    func isEmpty(_ table: Ops.TableAddress) -> Bool {
        var empty = true
        ops.readEntries(in: table, byteOffset: 0, count: Mode.entriesPerTable) { entry in
            empty = entry & EntryBits.present == 0
            return empty
        }
        return empty
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

// MARK: - The handlers

/// Map: runs of large leaves where the range covers whole, aligned entries; 4 KiB leaves elsewhere.
@usableFromInline
struct MapEditor<Mode: PagingMode>: TableEditor {
    /// The physical address of linear address `x` is `x &+ physicalDelta`.
    @usableFromInline let physicalDelta: UInt64
    /// Leaf flags (without PS).
    @usableFromInline let flags: UInt64
    @usableFromInline let addsUserAccess: Bool
    /// The large leaves this map may write.
    @usableFromInline let leafSizes: AllowedLeafSizes

    @inlinable
    init(physicalDelta: UInt64, flags: UInt64, addsUserAccess: Bool, leafSizes: AllowedLeafSizes) {
        self.physicalDelta = physicalDelta
        self.flags = flags
        self.addsUserAccess = addsUserAccess
        self.leafSizes = leafSizes
    }

    @inlinable var freesEmptyTables: Bool { false }

    @inlinable
    func edit(_ slot: EntrySlot, of cursor: EntryCursor<Mode>, entry: UInt64, largeLeaf: LeafSize?) -> EntryEdit {
        let physical = slot.start &+ physicalDelta
        guard slot.coversEntry, let size = Mode.largeLeaf(atLevel: cursor.level), leafSizes.allows(size),
            physical & (size.byteCount &- 1) == 0
        else { return .descend }
        // Every entry from here that the range covers whole becomes a large leaf.
        return .replace(
            count: cursor.wholeEntries(from: slot), first: physical | flags | EntryBits.pageSize, step: size.byteCount)
    }

    @inlinable
    func editLeaves<Ops: TableOps>(in table: Ops.TableAddress, _ cursor: EntryCursor<Mode>, ops: inout Ops)
        -> Ops.Relocation? where Ops.Mode == Mode
    {
        ops.writeEntries(
            in: table, byteOffset: cursor.index &* Mode.entryByteCount, count: cursor.remaining,
            first: (cursor.first &+ physicalDelta) | flags, step: 1 << 12)
    }
}

/// Unmap: clears entries the range covers whole (freeing what they referenced), descends into the others,
/// and frees the tables it leaves empty.
@usableFromInline
struct UnmapEditor<Mode: PagingMode>: TableEditor {
    @inlinable init() {}

    @inlinable var addsUserAccess: Bool { false }
    @inlinable var freesEmptyTables: Bool { true }

    @inlinable
    func edit(_ slot: EntrySlot, of cursor: EntryCursor<Mode>, entry: UInt64, largeLeaf: LeafSize?) -> EntryEdit {
        if entry & EntryBits.present == 0 { return .keep }
        return slot.coversEntry ? .replace(count: 1, first: 0, step: 0) : .descend
    }

    @inlinable
    func editLeaves<Ops: TableOps>(in table: Ops.TableAddress, _ cursor: EntryCursor<Mode>, ops: inout Ops)
        -> Ops.Relocation? where Ops.Mode == Mode
    {
        ops.writeEntries(
            in: table, byteOffset: cursor.index &* Mode.entryByteCount, count: cursor.remaining, first: 0, step: 0)
    }
}

/// Protect: rewrites the flags of present leaves, keeping their frames; absent entries stay absent.
@usableFromInline
struct ProtectEditor<Mode: PagingMode>: TableEditor {
    /// Leaf flags (without PS).
    @usableFromInline let flags: UInt64
    @usableFromInline let addsUserAccess: Bool

    @inlinable
    init(flags: UInt64, addsUserAccess: Bool) {
        self.flags = flags
        self.addsUserAccess = addsUserAccess
    }

    @inlinable var freesEmptyTables: Bool { false }

    @inlinable
    func edit(_ slot: EntrySlot, of cursor: EntryCursor<Mode>, entry: UInt64, largeLeaf: LeafSize?) -> EntryEdit {
        if entry & EntryBits.present == 0 { return .keep }
        if let size = largeLeaf, slot.coversEntry {
            return .replace(count: 1, first: (entry & Mode.largeFrameMask(size)) | flags | EntryBits.pageSize, step: 0)
        }
        return .descend
    }

    @inlinable
    func editLeaves<Ops: TableOps>(in table: Ops.TableAddress, _ cursor: EntryCursor<Mode>, ops: inout Ops)
        -> Ops.Relocation? where Ops.Mode == Mode
    {
        var table = table
        var moved: Ops.Relocation? = nil
        var cursor = cursor
        while let slot = cursor.next() {
            let old = ops.readEntry(at: ops.entryAddress(in: table, byteOffset: slot.byteOffset))
            guard old & EntryBits.present != 0 else { continue }
            let new = (old & Mode.frameAddressMask) | flags
            if new != old, let relocation = ops.writeEntry(in: table, byteOffset: slot.byteOffset, new) {
                table = ops.relocatedTable(relocation)
                moved = relocation
            }
        }
        return moved
    }
}

/// Link: writes one given entry at one level (the reference to a table another space owns), allocating or
/// splitting the tables above it as needed.
@usableFromInline
struct LinkEditor<Mode: PagingMode>: TableEditor {
    /// The level of the table that receives the entry.
    @usableFromInline let level: Int
    /// The entry to write there.
    @usableFromInline let entry: UInt64

    @inlinable
    init(level: Int, entry: UInt64) {
        self.level = level
        self.entry = entry
    }

    @inlinable var addsUserAccess: Bool { entry & EntryBits.userAccessible != 0 }
    @inlinable var freesEmptyTables: Bool { false }

    @inlinable
    func edit(_ slot: EntrySlot, of cursor: EntryCursor<Mode>, entry: UInt64, largeLeaf: LeafSize?) -> EntryEdit {
        cursor.level == level ? .replace(count: 1, first: self.entry, step: 0) : .descend
    }

    @inlinable
    func editLeaves<Ops: TableOps>(in table: Ops.TableAddress, _ cursor: EntryCursor<Mode>, ops: inout Ops)
        -> Ops.Relocation? where Ops.Mode == Mode
    {
        preconditionFailure("a link is written above the page tables")
    }
}
