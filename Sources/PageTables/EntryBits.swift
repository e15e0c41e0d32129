/// Bits of x86 paging-structure entries, named as in the Intel SDM Vol. 3A §4.3 (32-bit paging, Tables 4-4
/// to 4-6) and §4.5 (4-level paging, Tables 4-14 to 4-20). The low 12 bits mean the same in both modes.
public enum EntryBits {
    /// P, bit 0: the entry is present (maps a page or references a table).
    public static let present: UInt64 = 1 << 0
    /// R/W, bit 1: writes are allowed (with CR0.WP, even for supervisor accesses).
    public static let writable: UInt64 = 1 << 1
    /// U/S, bit 2: user-mode (CPL 3) accesses are allowed.
    public static let userAccessible: UInt64 = 1 << 2
    /// PWT, bit 3: page-level write-through.
    public static let writeThrough: UInt64 = 1 << 3
    /// PCD, bit 4: page-level cache disable.
    public static let cacheDisable: UInt64 = 1 << 4
    /// A, bit 5: accessed. Pre-set so the CPU never needs to write the entry.
    public static let accessed: UInt64 = 1 << 5
    /// D, bit 6 (leaves only): dirty. Pre-set for the same reason.
    public static let dirty: UInt64 = 1 << 6
    /// PS, bit 7 (PDPTE / PDE only): the entry maps a large page instead of referencing a table.
    public static let pageSize: UInt64 = 1 << 7
    /// G, bit 8 (leaves only): global translation.
    public static let global: UInt64 = 1 << 8
    /// Bit 9, ignored by the CPU and available to software: this project's copy-on-write marker.
    public static let copyOnWrite: UInt64 = 1 << 9
    /// XD/NX, bit 63 (4-level paging with EFER.NXE only): instruction fetches are not allowed.
    public static let executeDisable: UInt64 = 1 << 63

    /// Flags of every entry that references a next-level table: present, writable, accessed. Permissions
    /// are decided at the leaf; U/S is added when anything below is user-accessible.
    public static let intermediate: UInt64 = present | writable | accessed
}
