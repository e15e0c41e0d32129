public import PageTables

/// The boot-information block at ``Layout/bootInfoAddress``, passed to the guest in RDI / EDI.
///
/// Little-endian; the offsets are the guest contract (docs/layout.md): magic "MVMB" (u32 0x424D564D),
/// version, RAM size, table root, arena base and size, load address, image size, architecture, mapping
/// count, probe list address and count, flags, then one 32-byte record per mapping from offset 80.
public struct BootInfo: Equatable, Sendable {
    public static let magic: UInt32 = 0x424D_564D
    public static let version: UInt32 = 1
    /// Offset of the first mapping record.
    public static let mappingsOffset: UInt64 = 80
    /// Bytes per mapping record.
    public static let mappingRecordSize: UInt64 = 32

    /// Flags at offset 76.
    public struct Flags: OptionSet, Equatable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// No hypercall port (the QEMU oracle): the probe runtime prints its reports on the console.
        public static let reportOnConsole = Flags(rawValue: 1 << 0)
        /// With ``reportOnConsole``: a host answers on the console, so a write fault on a copy-on-write page
        /// prints `C <cr2>` and waits for one byte on COM1 ('0' resolved, else not copy-on-write).
        public static let hostAnswersOnConsole = Flags(rawValue: 1 << 1)
        /// Every probe runs at CPL 3, as if each had ``Probe/userMode`` set.
        public static let probesInUserMode = Flags(rawValue: 1 << 2)
    }

    public var memorySize: UInt64
    public var tableRoot: UInt64
    public var arenaBase: UInt64
    public var arenaSize: UInt64
    public var loadAddress: UInt64
    public var imageSize: UInt64
    public var architecture: Architecture
    public var probeListAddress: UInt64
    public var probeCount: UInt32
    public var flags: Flags
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
        memory.store(probeListAddress, at: address + 64)
        memory.store(probeCount, at: address + 72)
        memory.store(flags.rawValue, at: address + 76)
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

/// One probe for the probe guest: an access it makes and reports on (docs/layout.md, "Probes").
@_spi(Testing) public struct Probe: Equatable, Sendable {
    /// What the guest does.
    public enum Operation: UInt32, Sendable {
        /// Read `size` bytes (1, 2, 4 or 8) at the address and report the value.
        case read = 1
        /// Write the low `size` bytes of `value` at the address.
        case write = 2
        /// `call` the address (the host puts a `ret` there).
        case execute = 3
        /// `invlpg` the address.
        case invalidate = 4
    }

    public static let recordSize: UInt64 = 32
    public static let maximumCount = Int(0x4000 / recordSize)

    public var operation: Operation
    public var virtualAddress: UInt64
    public var size: UInt32
    public var value: UInt64
    /// Whether the access runs at CPL 3 (record flags bit 0): the probe runtime drops to user mode for it,
    /// and a page fault's error code has U/S set.
    public var userMode: Bool

    public init(
        _ operation: Operation, _ virtualAddress: UInt64, size: UInt32 = 8, value: UInt64 = 0, userMode: Bool = false
    ) {
        self.operation = operation
        self.virtualAddress = virtualAddress
        self.size = size
        self.value = value
        self.userMode = userMode
    }

    func write(to memory: GuestMemory, at address: UInt64) {
        memory.store(operation.rawValue, at: address)
        memory.store(size, at: address + 4)
        memory.store(virtualAddress, at: address + 8)
        memory.store(value, at: address + 16)
        memory.store(UInt32(userMode ? 1 : 0), at: address + 24)
        memory.store(UInt32(0), at: address + 28)
    }
}
