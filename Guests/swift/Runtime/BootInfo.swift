// The boot-information block (docs/layout.md, "Boot information block"): where the host says how much RAM
// there is, where the page tables live and which extra mappings it made.

/// A view of the block at `address` (0x2000 on microvm), read field by field where it is.
struct BootInfo {
    /// "MVMB" as a little-endian u32.
    static let expectedMagic: UInt32 = 0x424D_564D
    /// Bytes of copy-on-write scratch frames right below the arena (unmapped: not for the guest).
    static let copyOnWriteScratchSize: UInt64 = 256 << 10

    let address: UInt

    private func field<Value: FixedWidthInteger>(_ offset: Int, as type: Value.Type = Value.self) -> Value {
        UnsafeRawPointer(bitPattern: address).unsafelyUnwrapped.load(fromByteOffset: offset, as: Value.self)
    }

    var magic: UInt32 { field(0) }
    var version: UInt32 { field(4) }
    var memorySize: UInt64 { field(8) }
    /// The page-table root the host put in CR3.
    var tableRoot: UInt64 { field(16) }
    var arenaBase: UInt64 { field(24) }
    var arenaSize: UInt64 { field(32) }
    var loadAddress: UInt64 { field(40) }
    var imageSize: UInt64 { field(48) }
    /// 0 amd64, 1 i686.
    var architecture: UInt32 { field(56) }
    var mappingCount: UInt32 { field(60) }
    var probeListAddress: UInt64 { field(64) }
    var probeCount: UInt32 { field(72) }
    /// Bit 0: no hypercall port, report on the console; bit 1: a host answers on the console.
    var flags: UInt32 { field(76) }

    /// One of the `--map` mappings, in the order given.
    func mapping(_ index: Int) -> Mapping {
        let offset = 80 + index * 32
        return Mapping(
            virtualAddress: field(offset), physicalAddress: field(offset + 8), length: field(offset + 16),
            flags: field(offset + 24))
    }

    /// The first mapping for which `predicate` holds.
    func firstMapping(where predicate: (Mapping) -> Bool) -> Mapping? {
        var index = 0
        while index < Int(mappingCount) {
            let mapping = mapping(index)
            if predicate(mapping) { return mapping }
            index += 1
        }
        return nil
    }

    /// A mapping record: virtual and physical base, length, and flags (bit 0 write, 1 execute,
    /// 2 copy-on-write, 3 user).
    struct Mapping {
        var virtualAddress: UInt64
        var physicalAddress: UInt64
        var length: UInt64
        var flags: UInt32
        var isWritable: Bool { flags & 1 != 0 }
        var isExecutable: Bool { flags & 2 != 0 }
        var isCopyOnWrite: Bool { flags & 4 != 0 }
        var isUserAccessible: Bool { flags & 8 != 0 }
    }
}
