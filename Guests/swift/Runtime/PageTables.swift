// Walking the page tables in CR3, from inside the guest: what the CPU would translate, leaf by leaf.
//
// The same rules as the host's engine (Sources/PageTables, `forEachLeaf`) so a guest can print what the host
// prints: R/W and U/S of a leaf are ANDed with those of every entry above it, NX (bit 63, amd64 only) is ORed;
// a leaf is writable when its effective R/W is set, copy-on-write when R/W is clear and the software bit 9 is
// set. amd64: 4 levels of 512 8-byte entries (Intel SDM Vol. 3A §4.5), PS=1 in a PDPTE maps 1 GiB and in a PDE
// 2 MiB; addresses come out sign-extended from bit 47. i686: 2 levels of 1,024 4-byte entries (§4.3), PS=1 in a
// PDE maps 4 MiB only with CR4.PSE (otherwise the CPU ignores PS and so does this walk). The guest reads its own
// tables through the identity mapping of RAM, which covers the arena where the host built them.

import GuestSupport

/// One present leaf as the CPU sees it.
struct PageLeaf {
    /// First virtual address (canonical).
    var virtualAddress: UInt64
    /// Its physical address.
    var physicalAddress: UInt64
    /// Bytes the leaf maps: 4 KiB, 2 MiB, 4 MiB or 1 GiB.
    var size: UInt64
    /// The entry with the effective permissions folded in (R/W and U/S cleared, NX set as the walk decided).
    var entry: UInt64

    var isWritable: Bool { entry & PageTables.writable != 0 }
    var isUserAccessible: Bool { entry & PageTables.userAccessible != 0 }
    var isExecutable: Bool { entry & PageTables.executeDisable == 0 }
    var isCopyOnWrite: Bool { !isWritable && entry & PageTables.copyOnWrite != 0 }
}

enum PageTables {
    /// P, bit 0.
    static let present: UInt64 = 1 << 0
    /// R/W, bit 1.
    static let writable: UInt64 = 1 << 1
    /// U/S, bit 2.
    static let userAccessible: UInt64 = 1 << 2
    /// PS, bit 7: a large leaf (PDPTE / PDE).
    static let pageSize: UInt64 = 1 << 7
    /// Bit 9, available to software: microvm's copy-on-write marker.
    static let copyOnWrite: UInt64 = 1 << 9

    #if arch(x86_64)
        static let levels = 4
        static let indexBits = 9
        static let entryBytes = 8
        /// Physical address bits 51:12.
        static let frameMask: UInt64 = 0x000F_FFFF_FFFF_F000
        /// XD, bit 63.
        static let executeDisable: UInt64 = 1 << 63
    #else
        static let levels = 2
        static let indexBits = 10
        static let entryBytes = 4
        /// Physical address bits 31:12.
        static let frameMask: UInt64 = 0xFFFF_F000
        /// 32-bit paging has no NX.
        static let executeDisable: UInt64 = 0
    #endif

    /// The root table's physical address, from CR3.
    static var root: UInt64 { UInt64(guest_read_cr3()) & frameMask }

    /// Calls `body` for every present leaf of the tables in CR3, in virtual-address order.
    static func forEachLeaf(_ body: (PageLeaf) -> Void) {
        walk(
            table: root, level: levels - 1, base: 0, allowed: writable | userAccessible, denied: 0,
            largeLeaves: largeLeavesWalked, body)
    }

    /// The leaf that maps `virtualAddress`, if any: one descent, as the CPU's own walk.
    static func lookup(_ virtualAddress: UInt64) -> PageLeaf? {
        let largeLeaves = largeLeavesWalked
        var table = root
        var level = levels - 1
        var allowed = writable | userAccessible
        var denied: UInt64 = 0
        while true {
            let shift = UInt64(12 + indexBits * level)
            let index = Int(truncatingIfNeeded: (virtualAddress >> shift) & UInt64((1 << indexBits) - 1))
            let entry = readEntry(table: table, index: index)
            if entry & present == 0 { return nil }
            if level == 0 || (largeLeaves && level < 3 && entry & pageSize != 0) {
                return leaf(
                    entry: entry, address: virtualAddress & ~((1 << shift) &- 1), shift: shift,
                    allowed: allowed, denied: denied)
            }
            allowed &= entry
            denied |= entry & executeDisable
            table = entry & frameMask
            level -= 1
        }
    }

    /// Whether PS=1 makes a leaf: always on amd64 (2 MiB and 1 GiB; the host only writes sizes the vCPU
    /// walks), on i686 only with CR4.PSE (bit 4).
    static var largeLeavesWalked: Bool {
        #if arch(x86_64)
            return true
        #else
            return guest_read_cr4() & (1 << 4) != 0
        #endif
    }

    /// Entry `index` of the table at physical (= virtual, identity-mapped) address `table`.
    @inline(__always)
    static func readEntry(table: UInt64, index: Int) -> UInt64 {
        let pointer = UnsafeRawPointer(bitPattern: UInt(truncatingIfNeeded: table)).unsafelyUnwrapped
        #if arch(x86_64)
            return pointer.load(fromByteOffset: index &* entryBytes, as: UInt64.self)
        #else
            return UInt64(pointer.load(fromByteOffset: index &* entryBytes, as: UInt32.self))
        #endif
    }

    /// The leaf for `entry`, which maps 1 << `shift` bytes at `address`, under the permissions of the walk.
    @inline(__always)
    static func leaf(entry: UInt64, address: UInt64, shift: UInt64, allowed: UInt64, denied: UInt64) -> PageLeaf {
        let size: UInt64 = 1 << shift
        let effective = (entry & ~((writable | userAccessible) & ~allowed)) | denied
        return PageLeaf(
            virtualAddress: canonical(address), physicalAddress: effective & frameMask & ~(size &- 1), size: size,
            entry: effective)
    }

    private static func walk(
        table: UInt64, level: Int, base: UInt64, allowed: UInt64, denied: UInt64, largeLeaves: Bool,
        _ body: (PageLeaf) -> Void
    ) {
        let shift = UInt64(12 + indexBits * level)
        var index = 0
        while index < 1 << indexBits {
            let entry = readEntry(table: table, index: index)
            if entry & present != 0 {
                let address = base | (UInt64(truncatingIfNeeded: index) << shift)
                if level == 0 || (largeLeaves && level < 3 && entry & pageSize != 0) {
                    body(leaf(entry: entry, address: address, shift: shift, allowed: allowed, denied: denied))
                } else {
                    walk(
                        table: entry & frameMask, level: level - 1, base: address, allowed: allowed & entry,
                        denied: denied | (entry & executeDisable), largeLeaves: largeLeaves, body)
                }
            }
            index &+= 1
        }
    }

    /// amd64 addresses with bit 47 set are written with bits 63:48 set too.
    static func canonical(_ address: UInt64) -> UInt64 {
        #if arch(x86_64)
            return address & (1 << 47) != 0 ? address | 0xFFFF_0000_0000_0000 : address
        #else
            return address
        #endif
    }
}
