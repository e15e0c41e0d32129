public import PageTables

/// The boot-information block at ``Layout/bootInfoAddress``, passed to the guest in RDI / EDI.
///
/// Little-endian; the offsets are the guest contract (docs/layout.md):
/// magic "MVMB" (u32 0x424D564D), version, RAM size, table root, arena base and size, load address, image
/// size, architecture, mapping count, then one 32-byte record per mapping.
public struct BootInfo: Equatable, Sendable {
    public static let magic: UInt32 = 0x424D_564D
    public static let version: UInt32 = 1
    /// Offset of the first mapping record.
    public static let mappingsOffset: UInt64 = 64
    /// Bytes per mapping record.
    public static let mappingRecordSize: UInt64 = 32

    public var memorySize: UInt64
    public var tableRoot: UInt64
    public var arenaBase: UInt64
    public var arenaSize: UInt64
    public var loadAddress: UInt64
    public var imageSize: UInt64
    public var architecture: Architecture
    public var mappings: [Mapping]

    /// The block's size in bytes.
    public var byteCount: UInt64 { Self.mappingsOffset + UInt64(mappings.count) * Self.mappingRecordSize }

    /// Mapping flags in a record: bit 0 writable, bit 1 executable, bit 2 copy-on-write, bit 3 user.
    static func flags(of mapping: Mapping) -> UInt32 {
        var flags: UInt32 = 0
        if mapping.kind.isWritable { flags |= 1 }
        if mapping.kind.isExecutable { flags |= 2 }
        if case .copyOnWrite = mapping.kind { flags |= 4 }
        if mapping.userAccessible { flags |= 8 }
        return flags
    }

    /// Writes the block at `address`; false if it does not fit in RAM.
    @discardableResult
    func write(to memory: GuestMemory, at address: UInt64) -> Bool {
        guard memory.contains(address, count: byteCount) else { return false }
        memory.store(Self.magic, at: address)
        memory.store(Self.version, at: address + 4)
        memory.store(memorySize, at: address + 8)
        memory.store(tableRoot, at: address + 16)
        memory.store(arenaBase, at: address + 24)
        memory.store(arenaSize, at: address + 32)
        memory.store(loadAddress, at: address + 40)
        memory.store(imageSize, at: address + 48)
        memory.store(UInt32(architecture == .amd64 ? 0 : 1), at: address + 56)
        memory.store(UInt32(mappings.count), at: address + 60)
        var record = address + Self.mappingsOffset
        for mapping in mappings {
            memory.store(mapping.virtualBase, at: record)
            memory.store(mapping.physicalBase, at: record + 8)
            memory.store(mapping.length, at: record + 16)
            memory.store(Self.flags(of: mapping), at: record + 24)
            memory.store(UInt32(0), at: record + 28)
            record += Self.mappingRecordSize
        }
        return true
    }
}
