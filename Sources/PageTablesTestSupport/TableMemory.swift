public import PageTables

/// Tables held in Swift arrays, one 4 KiB page per table, at physical addresses from `physicalBase` up.
///
/// The storage both test doubles share: bounds-checked, with allocation accounting so tests can prove that
/// nothing leaks and nothing is freed twice.
public struct TableMemory<Mode: PagingMode>: Sendable {
    /// An entry or table: a page of this memory and a byte offset in it.
    public struct Address: Hashable, Sendable, CustomStringConvertible {
        public var page: Int
        public var offset: Int
        public init(page: Int, offset: Int = 0) {
            self.page = page
            self.offset = offset
        }
        public var description: String { "page \(page)+\(offset)" }
    }

    /// Every page ever allocated, entries truncated to the mode's width.
    public private(set) var pages: [[UInt64]] = []
    /// Pages given back, reused before new ones.
    public private(set) var freePages: [Int] = []
    /// Physical address of page 0.
    public let physicalBase: UInt64
    /// Most pages this memory may hold; allocation past it fails with `outOfTableMemory`.
    public var capacity: Int

    public init(physicalBase: UInt64 = 0x10_0000, capacity: Int = .max) {
        self.physicalBase = physicalBase
        self.capacity = capacity
    }

    /// Pages allocated and not freed.
    public var liveTableCount: Int { pages.count - freePages.count }

    public mutating func allocate() throws(PageTableError) -> Address {
        if let page = freePages.popLast() {
            precondition(pages[page].allSatisfy { $0 == 0 }, "a freed table was written")
            return Address(page: page)
        }
        guard pages.count < capacity else { throw .outOfTableMemory }
        pages.append([UInt64](repeating: 0, count: Mode.entriesPerTable))
        return Address(page: pages.count - 1)
    }

    public mutating func free(_ table: Address) {
        precondition(!freePages.contains(table.page), "table \(table.page) freed twice")
        pages[table.page] = [UInt64](repeating: 0, count: Mode.entriesPerTable)
        freePages.append(table.page)
    }

    public func read(_ address: Address) -> UInt64 {
        pages[address.page][address.offset / Mode.entryByteCount]
    }

    public mutating func write(_ address: Address, _ value: UInt64) {
        let mask: UInt64 = Mode.entryByteCount == 8 ? .max : 0xFFFF_FFFF
        pages[address.page][address.offset / Mode.entryByteCount] = value & mask
    }

    /// Overwrites a whole page (tests that plant garbage use it).
    public mutating func setPage(_ page: Int, _ entries: [UInt64]) {
        precondition(entries.count == Mode.entriesPerTable)
        pages[page] = entries
    }

    /// Adds pages until there are `count` (for garbage-table tests).
    public mutating func grow(to count: Int) {
        while pages.count < count { pages.append([UInt64](repeating: 0, count: Mode.entriesPerTable)) }
    }

    public func physicalAddress(of address: Address) -> UInt64 {
        physicalBase &+ UInt64(address.page) << 12 &+ UInt64(address.offset)
    }

    public func table(atPhysicalAddress physicalAddress: UInt64) -> Address? {
        guard physicalAddress >= physicalBase, physicalAddress & 0xFFF == 0 else { return nil }
        let page = (physicalAddress - physicalBase) >> 12
        guard page < UInt64(pages.count) else { return nil }
        return Address(page: Int(page))
    }
}

/// The read side and allocation both doubles share: tables addressed as pages of a ``TableMemory``.
public protocol TableMemoryOps: TableOps where TableAddress == TableMemory<Mode>.Address {
    var memory: TableMemory<Mode> { get set }
}

extension TableMemoryOps {
    public func entryAddress(in table: TableAddress, byteOffset: Int) -> TableAddress {
        TableAddress(page: table.page, offset: table.offset + byteOffset)
    }
    public func readEntry(at address: TableAddress) -> UInt64 { memory.read(address) }
    public func physicalAddress(of table: TableAddress) -> UInt64 { memory.physicalAddress(of: table) }
    public func table(atPhysicalAddress physicalAddress: UInt64) -> TableAddress? {
        memory.table(atPhysicalAddress: physicalAddress)
    }
    public mutating func allocateTable() throws(PageTableError) -> TableAddress { try memory.allocate() }
}

/// In-place table ops over ``TableMemory``: the reference store that writes every table where it is.
public struct ArrayTableOps<Mode: PagingMode>: InPlaceTableOps, TableMemoryOps, Sendable {
    public typealias TableAddress = TableMemory<Mode>.Address
    public var memory: TableMemory<Mode>
    public private(set) var root: TableAddress

    /// Creates the memory and its root table.
    public init(physicalBase: UInt64 = 0x10_0000, capacity: Int = .max) {
        memory = TableMemory(physicalBase: physicalBase, capacity: max(capacity, 1))
        root = try! memory.allocate()  // capacity >= 1: cannot fail
    }

    public mutating func freeTable(_ table: TableAddress) {
        precondition(table.page != root.page, "the root was freed")
        memory.free(table)
    }
    public mutating func writeEntry(in table: TableAddress, byteOffset: Int, _ value: UInt64) -> Never? {
        memory.write(entryAddress(in: table, byteOffset: byteOffset), value)
        return nil
    }
    public mutating func replaceRoot(with table: TableAddress) { root = table }
}

/// Movable table ops over ``TableMemory``: every table that exists when ``freeze()`` is called is treated
/// as part of a read-only snapshot, so the first write to it copies it to a new page and reports the move.
/// Tables allocated afterwards are writable in place: the reference movable store.
public struct CopyOnFirstWriteTableOps<Mode: PagingMode>: MovableTableOps, TableMemoryOps, Sendable {
    public typealias TableAddress = TableMemory<Mode>.Address
    public var memory: TableMemory<Mode>
    public private(set) var root: TableAddress
    /// Pages of the snapshot: never written, never freed.
    public private(set) var frozen: Set<Int> = []
    /// Every move made, old page -> new page, in order.
    public private(set) var moves: [(from: Int, to: Int)] = []
    /// How often the root was replaced.
    public private(set) var rootReplacements = 0

    public init(physicalBase: UInt64 = 0x10_0000, capacity: Int = .max) {
        memory = TableMemory(physicalBase: physicalBase, capacity: max(capacity, 1))
        root = try! memory.allocate()  // capacity >= 1: cannot fail
    }

    /// The same memory seen from another root (e.g. the snapshot's root, to check it is intact).
    public func viewing(root table: TableAddress) -> Self {
        var copy = self
        copy.root = table
        return copy
    }

    /// Marks every live table as part of the read-only snapshot.
    public mutating func freeze() {
        frozen = Set(0..<memory.pages.count).subtracting(memory.freePages)
    }

    public mutating func freeTable(_ table: TableAddress) {
        precondition(table.page != root.page, "the root was freed")
        // A snapshot page is only dropped from this view; its bytes stay as they were.
        if frozen.contains(table.page) { return }
        memory.free(table)
    }
    public mutating func writeEntry(in table: TableAddress, byteOffset: Int, _ value: UInt64) -> TableAddress? {
        var target = table
        var moved: TableAddress? = nil
        if frozen.contains(table.page) {
            // Copies come from spare capacity; a test that limits capacity below that has a bug of its own.
            guard let copy = try? memory.allocate() else { preconditionFailure("no room to copy a snapshot table") }
            memory.setPage(copy.page, memory.pages[table.page])
            moves.append((table.page, copy.page))
            target = copy
            moved = copy
        }
        memory.write(entryAddress(in: target, byteOffset: byteOffset), value)
        return moved
    }
    public mutating func replaceRoot(with table: TableAddress) {
        root = table
        rootReplacements += 1
    }
}
