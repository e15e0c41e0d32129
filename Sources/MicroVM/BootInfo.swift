public import PageTables

/// The boot-information block at ``Layout/bootInfoAddress``, passed to the guest in RDI / EDI.
///
/// Little-endian, at fixed offsets that guests rely on: magic "MVMB" (u32 0x424D564D) at 0, version (u32)
/// at 4, RAM size at 8, table root at 16, arena base at 24 and size at 32, load address at 40, image size
/// at 48 (u64 each), architecture (u32: 0 amd64, 1 i686) at 56, mapping count (u32) at 60, probe list
/// address (u64) at 64 and count (u32) at 72, flags (u32) at 76, then one 32-byte record per mapping from
/// offset 80: virtual base, physical base, length (u64 each), flags (u32: bit 0 writable, bit 1 executable,
/// bit 2 copy-on-write, bit 3 user), four reserved bytes.
///
/// Version 1 describes a flat image and is written byte for byte as before ELF guests existed. Version 2
/// describes an ELF image and only adds to version 1: the mapping records go on with one record per ELF
/// segment (flag bit 4), counted in the mapping count, and a 16-byte extension follows the last record
/// (entry point u64, segment count u32, reserved u32). A reader of version 1 reads a version-2 block
/// correctly; it only does not know which records are segments.
public struct BootInfo: Equatable, Sendable {
    /// The first four bytes of the block: "MVMB" read as a little-endian u32.
    public static let magic: UInt32 = 0x424D_564D
    /// The version of a block that describes a flat image.
    public static let version: UInt32 = 1
    /// The version of a block that describes an ELF image (``segments`` and ``entryPoint`` are written).
    public static let elfVersion: UInt32 = 2
    /// Bytes of the version-2 extension after the last mapping record.
    public static let elfExtensionSize: UInt64 = 16
    /// Offset of the first mapping record.
    public static let mappingsOffset: UInt64 = 80
    /// Bytes per mapping record.
    public static let mappingRecordSize: UInt64 = 32

    /// Flags at offset 76.
    public struct Flags: OptionSet, Equatable, Sendable {
        /// The flag bits as the block stores them.
        public let rawValue: UInt32
        /// The flags whose bits are set in `rawValue`.
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// No hypercall port (the QEMU oracle): the probe runtime prints its reports on the console.
        public static let reportOnConsole = Flags(rawValue: 1 << 0)
        /// With ``reportOnConsole``: a host answers on the console, so a write fault on a copy-on-write page
        /// prints `C <cr2>` and waits for one byte on COM1 ('0' resolved, else not copy-on-write).
        public static let hostAnswersOnConsole = Flags(rawValue: 1 << 1)
        /// Every probe runs at CPL 3, as if each had ``Probe/userMode`` set.
        public static let probesInUserMode = Flags(rawValue: 1 << 2)
    }

    /// Mapping-record flag bit 4: the record is an ELF segment (version 2).
    public static let segmentRecordFlag: UInt32 = 1 << 4

    /// Guest RAM in bytes (offset 8).
    public var memorySize: UInt64
    /// The guest-physical address of the root table the host built, the value in CR3 at entry (offset 16).
    public var tableRoot: UInt64
    /// The first byte of the page-table arena (offset 24).
    public var arenaBase: UInt64
    /// The arena's size in bytes (offset 32).
    public var arenaSize: UInt64
    /// Where the image was loaded (offset 40).
    public var loadAddress: UInt64
    /// The image's size in bytes (offset 48).
    public var imageSize: UInt64
    /// The paging mode the guest starts in (offset 56: 0 amd64, 1 i686).
    public var architecture: Architecture
    /// The guest-physical address of the probe list, 0 without one (offset 64).
    public var probeListAddress: UInt64
    /// Probe records in the list (offset 72).
    public var probeCount: UInt32
    /// Flags (offset 76).
    public var flags: Flags
    /// The extra mappings (`--map`), one record each from offset 80.
    public var mappings: [Mapping]
    /// The ELF segments' mappings, in program header order (empty for a flat image).
    public var segments: [Mapping] = []
    /// The entry point of an ELF image; `nil` for a flat image (version 1, no extension).
    public var entryPoint: UInt64? = nil

    /// The version this block is written with: ``version`` for a flat image, ``elfVersion`` for an ELF one.
    public var writtenVersion: UInt32 { entryPoint == nil ? Self.version : Self.elfVersion }

    /// The block's size in bytes.
    public var byteCount: UInt64 {
        Self.mappingsOffset + UInt64(mappings.count + segments.count) * Self.mappingRecordSize
            + (entryPoint == nil ? 0 : Self.elfExtensionSize)
    }

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
        memory.store(writtenVersion, at: address + 4)
        memory.store(memorySize, at: address + 8)
        memory.store(tableRoot, at: address + 16)
        memory.store(arenaBase, at: address + 24)
        memory.store(arenaSize, at: address + 32)
        memory.store(loadAddress, at: address + 40)
        memory.store(imageSize, at: address + 48)
        memory.store(UInt32(architecture == .amd64 ? 0 : 1), at: address + 56)
        memory.store(UInt32(mappings.count + segments.count), at: address + 60)
        memory.store(probeListAddress, at: address + 64)
        memory.store(probeCount, at: address + 72)
        memory.store(flags.rawValue, at: address + 76)
        var record = address + Self.mappingsOffset
        for (mapping, segmentFlag) in mappings.map({ ($0, UInt32(0)) }) + segments.map({ ($0, Self.segmentRecordFlag) })
        {
            memory.store(mapping.virtualBase, at: record)
            memory.store(mapping.physicalBase, at: record + 8)
            memory.store(mapping.length, at: record + 16)
            memory.store(Self.flags(of: mapping) | segmentFlag, at: record + 24)
            memory.store(UInt32(0), at: record + 28)
            record += Self.mappingRecordSize
        }
        if let entryPoint {
            memory.store(entryPoint, at: record)
            memory.store(UInt32(segments.count), at: record + 8)
            memory.store(UInt32(0), at: record + 12)
        }
        return true
    }
}

/// One probe for the probe guest: an access it makes and reports on, as a 32-byte record of the probe
/// list (u32 operation, u32 size, u64 virtual address, u64 value, 8 reserved bytes).
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
