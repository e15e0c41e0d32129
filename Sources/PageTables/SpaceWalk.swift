/// One address space as ``PageTable/walkSpaces(roots:ranges:maximumTables:)`` reports it: its leaves, its
/// references to tables it shares with a space walked before it, and the tables it uses.
public struct SpaceWalk: Hashable, Sendable {
    /// What the walk found at one place in a space, in address order.
    public enum Item: Hashable, Sendable {
        /// A present leaf of this space (or the part of it inside the range), as the CPU sees it from this
        /// space's root. Large leaves are reported like any other.
        case mapping(Translation)
        /// A block of this space mapped by a table that was reached first elsewhere: the leaves under it are
        /// reported there, not here.
        case reference(SpaceReference)
    }

    /// The physical address of the space's root table: its identity in references.
    public var root: UInt64
    /// Leaves and references in address order.
    public var items: [Item]
    /// The physical addresses of the tables this space's walk entered: its root, then every table it reached
    /// first, each once. A shared table is listed under the space that reached it first, so the lists of one
    /// walk together name every table frame once: what a snapshot compactor must treat as tables.
    public var tables: [UInt64]

    /// A space with the given root, items and tables.
    /// - Parameters:
    ///   - root: the physical address of the space's root table.
    ///   - items: leaves and references in address order.
    ///   - tables: the physical addresses of the tables the space owns, root first.
    public init(root: UInt64, items: [Item] = [], tables: [UInt64] = []) {
        self.root = root
        self.items = items
        self.tables = tables
    }
}

/// A block of one address space whose table was reached first elsewhere: "our block at `virtualAddress` is
/// the owner's block at `ownerVirtualAddress`".
///
/// The shared table sits `depth` levels below the root, and everything under it (tables and leaves) is
/// shared whole. On amd64 `depth` is 1 (a PDPT: 512 GiB blocks), 2 (a page directory: 1 GiB) or 3 (a page
/// table: 2 MiB); on i686 it is 1 (a page table: 4 MiB). The owner is a space walked earlier, or this same
/// space when it reaches one table at two addresses (the owner's block then comes earlier in its items).
public struct SpaceReference: Hashable, Sendable, CustomStringConvertible {
    /// How many levels below the root the shared table sits.
    public var depth: Int
    /// The owning space: the physical address of its root table.
    public var space: UInt64
    /// The first address of the block in this space (canonical on amd64).
    public var virtualAddress: UInt64
    /// The first address of the block in the owning space (canonical on amd64).
    public var ownerVirtualAddress: UInt64
    /// Bytes the block spans.
    public var length: UInt64
    /// The physical address of the shared table in the walked tables.
    public var tablePhysicalAddress: UInt64

    /// A reference to the block at `ownerVirtualAddress` of `space`, seen at `virtualAddress`.
    /// - Parameters:
    ///   - depth: how many levels below the root the shared table sits.
    ///   - space: the physical address of the owning space's root.
    ///   - virtualAddress: the first address of the block in this space.
    ///   - ownerVirtualAddress: the first address of the block in the owning space.
    ///   - length: bytes the block spans (what one entry maps at the level above the shared table).
    ///   - tablePhysicalAddress: the shared table's physical address.
    public init(
        depth: Int, space: UInt64, virtualAddress: UInt64, ownerVirtualAddress: UInt64, length: UInt64,
        tablePhysicalAddress: UInt64
    ) {
        self.depth = depth
        self.space = space
        self.virtualAddress = virtualAddress
        self.ownerVirtualAddress = ownerVirtualAddress
        self.length = length
        self.tablePhysicalAddress = tablePhysicalAddress
    }

    /// `va X len L -> space S va Y (depth D, table T)`.
    public var description: String {
        "va \(hex(virtualAddress)) len \(hex(length)) -> space \(hex(space)) va \(hex(ownerVirtualAddress)) "
            + "(depth \(depth), table \(hex(tablePhysicalAddress)))"
    }
}
