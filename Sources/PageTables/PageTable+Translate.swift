extension PageTable {
    /// Calls `body` once per present leaf in `[virtualBase, virtualBase + length)`, in address order, with
    /// the part of the leaf inside the range (amd64 addresses sign-extended back to canonical form).
    ///
    /// Permissions are the CPU's: R/W and U/S of the leaf ANDed with those of every entry above it, NX ORed.
    ///
    /// Safe over tables a guest has scribbled on: every table reference is checked with
    /// ``TableReader/table(atPhysicalAddress:)`` before it is read, and the walk is iterative with one slot
    /// per level, so it never reads outside the ops' memory. Its cost is bounded by `maximumTables`: tables
    /// the host built are each entered once, while self-referencing tables would be entered again and again.
    /// - Throws: ``PageTableError/entryOutsideTableMemory(virtualAddress:level:entry:)`` or
    ///   ``PageTableError/malformedEntry(virtualAddress:level:entry:)`` for a bad entry; range errors as
    ///   for `map`, except that `virtualBase` and `length` need no alignment.
    @inlinable @inline(__always)
    public func forEachLeaf(
        virtualBase: UInt64, length: UInt64, maximumTables: Int = .max, _ body: (Translation) -> Void
    ) throws(PageTableError) {
        guard let (first, last) = try Self.checkedRange(virtualBase, length, aligned: false) else { return }
        let top = Mode.levelCount &- 1
        let indexMask = UInt64(Mode.entriesPerTable &- 1)
        let entryBytes = Mode.entryByteCount
        // One slot per level (at most four), on the stack: the table being walked, the linear address its
        // first entry maps, and the next and last index to visit.
        var tables = InlineArray<4, Ops.TableAddress>(repeating: ops.root)
        var bases = InlineArray<4, UInt64>(repeating: 0)
        var next = InlineArray<4, Int>(repeating: 0)
        var lastIndex = InlineArray<4, Int>(repeating: 0)
        // What the entries above each level allow: R/W and U/S ANDed down the walk, NX ORed.
        let permissionBits = EntryBits.writable | EntryBits.userAccessible
        var allowed = InlineArray<4, UInt64>(repeating: permissionBits)
        var denied = InlineArray<4, UInt64>(repeating: 0)
        var tablesEntered = 0
        let topSpan = (UInt64(Mode.entriesPerTable) &<< UInt64(Mode.shift(ofLevel: top))) &- 1
        next[top] = Int(truncatingIfNeeded: (first &>> UInt64(Mode.shift(ofLevel: top))) & indexMask)
        lastIndex[top] = Int(truncatingIfNeeded: (min(last, topSpan) &>> UInt64(Mode.shift(ofLevel: top))) & indexMask)

        var level = top
        while true {
            if level == 0 {
                // The leaf table: one tight loop over its entries.
                let table = tables[0]
                let base = bases[0]
                // Every leaf of one table shares its sign extension (amd64 bits 63:48) and what is above it.
                let high = Mode.canonical(base) & ~(Mode.virtualSpaceSize &- 1)
                let clear = permissionBits & ~allowed[0]
                let set = denied[0]
                var index = next[0]
                let end = lastIndex[0]
                while index <= end {
                    let raw = ops.readEntry(at: ops.entryAddress(in: table, byteOffset: index &* entryBytes))
                    if raw & EntryBits.present != 0 {
                        let entry = (raw & ~clear) | set
                        let entryBase = base &+ (UInt64(truncatingIfNeeded: index) &<< 12)
                        let start = max(first, entryBase)
                        let end = min(last, entryBase &+ 0xFFF)
                        body(
                            Translation(
                                virtualAddress: start | high,
                                physicalAddress: (entry & Mode.frameAddressMask) &+ (start &- entryBase),
                                length: end &- start &+ 1, kind: Self.kind(ofLeaf: entry),
                                userAccessible: entry & EntryBits.userAccessible != 0, leafSize: .size4K))
                    }
                    index &+= 1
                }
                level = 1
                continue
            }
            if next[level] > lastIndex[level] {
                if level == top { return }
                level &+= 1
                continue
            }
            let shift = UInt64(Mode.shift(ofLevel: level))
            let index = next[level]
            next[level] = index &+ 1
            let entryBase = bases[level] &+ (UInt64(truncatingIfNeeded: index) &<< shift)
            let entry = ops.readEntry(at: ops.entryAddress(in: tables[level], byteOffset: index &* entryBytes))
            guard entry & EntryBits.present != 0 else { continue }
            guard let size = try largeLeafSize(of: entry, level: level, virtualAddress: entryBase) else {
                guard let child = ops.table(atPhysicalAddress: entry & Mode.frameAddressMask) else {
                    throw .entryOutsideTableMemory(
                        virtualAddress: Mode.canonical(max(first, entryBase)), level: level, entry: entry)
                }
                tablesEntered &+= 1
                guard tablesEntered <= maximumTables else { throw .walkTooLong(tables: maximumTables) }
                // Descend: the child covers [entryBase, entryBase + span), clamped to the range.
                let childShift = UInt64(Mode.shift(ofLevel: level &- 1))
                let entryLast = entryBase &+ ((1 &<< shift) &- 1)
                allowed[level &- 1] = allowed[level] & entry
                denied[level &- 1] = denied[level] | (entry & Mode.executeDisableBit)
                level &-= 1
                tables[level] = child
                bases[level] = entryBase
                next[level] = Int(truncatingIfNeeded: (max(first, entryBase) &>> childShift) & indexMask)
                lastIndex[level] = Int(truncatingIfNeeded: (min(last, entryLast) &>> childShift) & indexMask)
                continue
            }
            let leaf = (entry & ~(permissionBits & ~allowed[level])) | denied[level]
            let start = max(first, entryBase)
            let end = min(last, entryBase &+ (size.byteCount &- 1))
            body(
                Translation(
                    virtualAddress: Mode.canonical(start),
                    physicalAddress: (leaf & Mode.largeFrameMask(size)) &+ (start &- entryBase),
                    length: end &- start &+ 1, kind: Self.kind(ofLeaf: leaf),
                    userAccessible: leaf & EntryBits.userAccessible != 0, leafSize: size))
        }
    }

    /// One ``Translation`` per present leaf in the range (see ``forEachLeaf(virtualBase:length:_:)``).
    @inlinable
    public func translate(virtualBase: UInt64, length: UInt64, maximumTables: Int = .max) throws(PageTableError)
        -> [Translation]
    {
        var result: [Translation] = []
        try forEachLeaf(virtualBase: virtualBase, length: length, maximumTables: maximumTables) { result.append($0) }
        return result
    }

    /// The translation of one address: its physical address, kind, U/S and leaf size, with `length` the
    /// bytes from `virtualAddress` to the end of its leaf; `nil` when it is not mapped.
    @inlinable
    public func lookup(_ virtualAddress: UInt64) throws(PageTableError) -> Translation? {
        var found: Translation? = nil
        try forEachLeaf(virtualBase: virtualAddress, length: 1) { found = $0 }
        guard var translation = found else { return nil }
        let leafEnd = (Mode.linear(virtualAddress) | (translation.leafSize.byteCount &- 1)) &+ 1
        translation.length = leafEnd &- Mode.linear(virtualAddress)
        return translation
    }

    /// The range as maximal runs: adjacent leaves with contiguous virtual and physical addresses and equal
    /// kind, U/S and leaf size merged into one ``Translation``.
    @inlinable
    public func coalescedTranslate(virtualBase: UInt64, length: UInt64, maximumTables: Int = .max)
        throws(PageTableError) -> [Translation]
    {
        var result: [Translation] = []
        try forEachLeaf(virtualBase: virtualBase, length: length, maximumTables: maximumTables) { leaf in
            if var previous = result.last,
                previous.virtualAddress &+ previous.length == leaf.virtualAddress,
                previous.physicalAddress &+ previous.length == leaf.physicalAddress,
                previous.kind == leaf.kind, previous.userAccessible == leaf.userAccessible,
                previous.leafSize == leaf.leafSize
            {
                previous.length &+= leaf.length
                result[result.count &- 1] = previous
            } else {
                result.append(leaf)
            }
        }
        return result
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
