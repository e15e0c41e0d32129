/// A table as the multi-space walk keys it: one physical table used at one depth. The same frame used at
/// two depths (only hostile tables do that) is two different tables to the walk, as it is to the CPU.
@usableFromInline
struct SharedTableKey: Hashable {
    @usableFromInline let physicalAddress: UInt64
    @usableFromInline let depth: Int

    @inlinable
    init(physicalAddress: UInt64, depth: Int) {
        self.physicalAddress = physicalAddress
        self.depth = depth
    }
}

extension PageTable {
    /// Walks several address spaces whose tables live in this store and may share subtrees, reporting each
    /// shared table once.
    ///
    /// The roots are walked in the order given (their order of primacy), each over every range in address
    /// order. Leaves come back as ``SpaceWalk/Item/mapping(_:)`` items of the space they were reached from;
    /// leaves of one size that continue one another (contiguous virtual and physical addresses, the same kind
    /// and U/S) come back as one mapping, whose ``Translation/leafSize`` is the size of each. When a
    /// walk reaches a table (below its root) that was already reached, at the same depth, from an earlier
    /// root or from an earlier address of the same root, it does not descend: it reports a
    /// ``SpaceWalk/Item/reference(_:)`` to the space that reached the table first. So every reference names a
    /// space earlier in the result, or its own space at an earlier address, and a rebuilder can process the
    /// result in order (see ``linkShared(_:builtRoots:)``). A root listed twice is walked once.
    ///
    /// Safe over tables a guest has scribbled on, as ``visitLeaves(virtualBase:length:maximumTables:_:)`` is:
    /// every reference is checked before it is read, and each table is entered at most once per depth, so
    /// even tables that reference themselves or each other end; `maximumTables` bounds the work further.
    /// - Parameters:
    ///   - roots: the root table of each space, in order of primacy; the store's own `root` is not used.
    ///   - ranges: the virtual ranges to walk in every space, in address order, not overlapping; by default
    ///     the whole space (``virtualSpace``).
    ///   - maximumTables: the most tables (below the roots) the whole walk may enter.
    /// - Returns: one ``SpaceWalk`` per distinct root, in the order of `roots`.
    /// - Throws: as ``visitLeaves(virtualBase:length:maximumTables:_:)``:
    ///   ``PageTableError/entryOutsideTableMemory(virtualAddress:level:entry:)``,
    ///   ``PageTableError/malformedEntry(virtualAddress:level:entry:)``, ``PageTableError/walkTooLong(tables:)``
    ///   and range errors.
    @inlinable
    public func walkSpaces(
        roots: [Ops.TableAddress], ranges: [(base: UInt64, length: UInt64)] = Self.virtualSpace,
        maximumTables: Int = .max
    ) throws(PageTableError) -> [SpaceWalk] {
        var linearRanges: [(first: UInt64, last: UInt64)] = []
        for range in ranges {
            guard let (first, last) = try Self.checkedRange(range.base, range.length, aligned: false) else { continue }
            precondition(linearRanges.last.map { $0.last < first } ?? true, "ranges must be in address order")
            linearRanges.append((first, last))
        }
        let top = Mode.levelCount &- 1
        // Who reached each table first, and where: the owner of everything below it.
        var owners: [SharedTableKey: (space: UInt64, base: UInt64)] = [:]
        var walks: [SpaceWalk] = []
        var rootsWalked: Set<UInt64> = []
        var tablesEntered = 0
        for root in roots {
            let rootPhysical = ops.physicalAddress(of: root)
            guard rootsWalked.insert(rootPhysical).inserted else { continue }
            var items: [SpaceWalk.Item] = []
            var tables: [UInt64] = [rootPhysical]
            // Leaves that continue one another are gathered into one mapping before it is appended.
            var run: Translation? = nil
            for range in linearRanges {
                _ = try walk(
                    from: root, first: range.first, last: range.last, maximumTables: maximumTables,
                    tablesEntered: &tablesEntered, runs: true,
                    enter: { physical, level, base in
                        let key = SharedTableKey(physicalAddress: physical, depth: top &- level)
                        if let owner = owners[key] {
                            if let pending = run { items.append(.mapping(pending)) }
                            run = nil
                            items.append(
                                .reference(
                                    SpaceReference(
                                        depth: key.depth, space: owner.space, virtualAddress: Mode.canonical(base),
                                        ownerVirtualAddress: Mode.canonical(owner.base),
                                        length: 1 << UInt64(Mode.shift(ofLevel: level &+ 1)),
                                        tablePhysicalAddress: physical)))
                            return false
                        }
                        owners[key] = (rootPhysical, base)
                        tables.append(physical)
                        return true
                    },
                    leaf: { leaf in
                        if var pending = run, pending.continues(with: leaf) {
                            pending.length &+= leaf.length
                            run = pending
                        } else {
                            if let pending = run { items.append(.mapping(pending)) }
                            run = leaf
                        }
                        return .continue
                    })
            }
            if let pending = run { items.append(.mapping(pending)) }
            walks.append(SpaceWalk(root: rootPhysical, items: items, tables: tables))
        }
        return walks
    }

    /// Links a shared table into the space being rebuilt: makes the entry for `reference.virtualAddress` one
    /// level above the shared table equal the owner's entry for `reference.ownerVirtualAddress` in its
    /// rebuilt tables, so both spaces use the same table again.
    ///
    /// The tables above the entry are found, allocated or split as `map` does (with U/S added when the linked
    /// entry has it), a table the entry referenced before is freed, and a moved table rewrites its parent up
    /// to the root, as for every other operation. Permissions below the link are the owner's.
    ///
    /// A rebuilder goes through a ``walkSpaces(roots:ranges:maximumTables:)`` result in order: for each space
    /// it makes a root (``TableOps/replaceRoot(with:)`` switches the store to it), records it in `builtRoots`
    /// under the old root's physical address, maps every ``SpaceWalk/Item/mapping(_:)`` with
    /// ``map(_:leafSizes:)`` at its own leaf size (so the tables a reference needs stay tables) and links every
    /// ``SpaceWalk/Item/reference(_:)`` with this method.
    /// - Parameters:
    ///   - reference: a reference from ``walkSpaces(roots:ranges:maximumTables:)``.
    ///   - builtRoots: the rebuilt root of each space already rebuilt, keyed by the physical address of its
    ///     old root (``SpaceWalk/root``). A reference to the space being rebuilt itself (a table it reaches at
    ///     two addresses) needs that space's current root here too.
    /// - Returns: `false` if the owner's rebuilt tables map nothing at the block (the shared table was empty,
    ///   or the owner maps the block with one larger leaf), so there was nothing to link.
    /// - Throws: ``PageTableError/unknownSpace(root:)`` if `builtRoots` has no root for the owner,
    ///   ``PageTableError/invalidReference(_:)`` for a reference that names no block, walk errors from the
    ///   owner's tables, and ``PageTableError/outOfTableMemory`` if the tables above the link cannot be made.
    @inlinable @discardableResult
    public mutating func linkShared(_ reference: SpaceReference, builtRoots: [UInt64: Ops.TableAddress])
        throws(PageTableError) -> Bool
    {
        let top = Mode.levelCount &- 1
        guard reference.depth >= 1, reference.depth <= top else { throw .invalidReference(reference) }
        let level = top &- reference.depth &+ 1  // the level of the table holding the linking entry
        let length: UInt64 = 1 << UInt64(Mode.shift(ofLevel: level))
        guard reference.length == length,
            let (first, last) = try? Self.checkedRange(reference.virtualAddress, length), first & (length &- 1) == 0,
            let (ownerFirst, _) = try? Self.checkedRange(reference.ownerVirtualAddress, length),
            ownerFirst & (length &- 1) == 0
        else { throw .invalidReference(reference) }
        guard let ownerRoot = builtRoots[reference.space] else { throw .unknownSpace(root: reference.space) }
        guard let entry = try entry(mapping: ownerFirst, atLevel: level, under: ownerRoot) else { return false }
        try edit(LinkEditor<Mode>(level: level, entry: entry), first: first, last: last)
        return true
    }

    /// The entry of the table at `level` that maps the linear address `address` under `root`, or `nil` when the
    /// descent meets an absent entry, or a large leaf above `level`.
    /// - Throws: ``PageTableError/entryOutsideTableMemory(virtualAddress:level:entry:)`` or
    ///   ``PageTableError/malformedEntry(virtualAddress:level:entry:)`` for a bad entry on the way.
    @inlinable
    func entry(mapping address: UInt64, atLevel target: Int, under root: Ops.TableAddress) throws(PageTableError)
        -> UInt64?
    {
        var table = root
        var level = Mode.levelCount &- 1
        var tableBase: UInt64 = 0
        while true {
            let cursor = EntryCursor<Mode>(level: level, tableBase: tableBase, first: address, last: address)
            let slot = cursor.slot(cursor.index)
            let entry = ops.readEntry(at: ops.entryAddress(in: table, byteOffset: slot.byteOffset))
            guard entry & EntryBits.present != 0 else { return nil }
            if level == target { return entry }
            guard try largeLeafSize(of: entry, level: level, virtualAddress: slot.base) == nil else { return nil }
            guard let child = ops.table(atPhysicalAddress: entry & Mode.frameAddressMask) else {
                throw .entryOutsideTableMemory(virtualAddress: Mode.canonical(address), level: level, entry: entry)
            }
            table = child
            tableBase = slot.base
            level &-= 1
        }
    }
}
