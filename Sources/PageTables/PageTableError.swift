/// Why the engine refused an operation or a walk. After any error the tables are consistent: no table is
/// half-linked and no entry points at garbage. With in-place ops an operation may have been applied to a
/// prefix of its range; with movable ops the reachable tables are as before the operation (copies it had
/// made are left unreferenced for the ops to reclaim).
public enum PageTableError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Which part of a mapping request was misaligned.
    public enum Field: String, Sendable {
        /// The virtual base.
        case virtualAddress = "virtual address"
        /// The physical base.
        case physicalAddress = "physical address"
        /// The length.
        case length
    }

    /// A base or a length is not a multiple of 4 KiB.
    case misaligned(Field, UInt64)
    /// `virtualBase + length` wraps past 2^64.
    case rangeOverflow(virtualAddress: UInt64, length: UInt64)
    /// The range leaves the mode's virtual space (i686: beyond 4 GiB; amd64: beyond the 48-bit canonical
    /// halves, or across the non-canonical hole).
    case outsideVirtualSpace(virtualAddress: UInt64, length: UInt64, architecture: Architecture)
    /// The physical range ends beyond what the mode's entries can name.
    case physicalAddressTooWide(physicalAddress: UInt64, length: UInt64, architecture: Architecture)
    /// The table ops could not allocate another table (the arena is full).
    case outOfTableMemory
    /// While walking, an entry referenced a table outside the ops' memory (a scribbled-on table).
    case entryOutsideTableMemory(virtualAddress: UInt64, level: Int, entry: UInt64)
    /// While walking, an entry had PS set at a level that cannot hold a leaf (amd64 PML4).
    case malformedEntry(virtualAddress: UInt64, level: Int, entry: UInt64)
    /// A walk descended into more tables than its limit: tables that reference themselves or each other
    /// many times over (a walk over tables the host built enters each table once).
    case walkTooLong(tables: Int)
    /// A reference names a space with no rebuilt root: link the spaces in the order the walk reported them.
    case unknownSpace(root: UInt64)
    /// A reference's depth is not between 1 and the mode's levels below the root, or an address in it is
    /// not the start of a block of its length inside the virtual space.
    case invalidReference(SpaceReference)

    /// One line for a person: what was wrong, with the addresses involved.
    public var description: String {
        switch self {
        case .misaligned(let field, let value):
            "\(field.rawValue) \(hex(value)) is not a multiple of 4 KiB"
        case .rangeOverflow(let va, let length):
            "range \(hex(va)) + \(hex(length)) overflows 64 bits"
        case .outsideVirtualSpace(let va, let length, let arch):
            arch == .amd64
                ? "range \(hex(va)) + \(hex(length)) is not inside one canonical half of the 48-bit amd64 address space"
                : "range \(hex(va)) + \(hex(length)) goes beyond the 4 GiB i686 address space"
        case .physicalAddressTooWide(let pa, let length, let arch):
            "physical range \(hex(pa)) + \(hex(length)) goes beyond the \(arch == .amd64 ? 52 : 32)-bit physical addresses \(arch) entries can hold"
        case .outOfTableMemory:
            "the page-table arena is full"
        case .entryOutsideTableMemory(let va, let level, let entry):
            "entry \(hex(entry)) at level \(level) for \(hex(va)) references a table outside table memory"
        case .malformedEntry(let va, let level, let entry):
            "entry \(hex(entry)) at level \(level) for \(hex(va)) sets reserved bits for its level"
        case .walkTooLong(let tables):
            "the walk entered more than \(tables) tables: the tables reference themselves or each other"
        case .unknownSpace(let root):
            "no rebuilt tables for the space with root \(hex(root)): link spaces in the order they were walked"
        case .invalidReference(let reference):
            "the reference \(reference) does not name one block of the virtual space"
        }
    }
}
