/// What a mapping allows, decoded from or encoded into a leaf entry.
public enum MappingKind: Hashable, Sendable, CustomStringConvertible {
    /// A plain mapping: always readable, writable and executable as given.
    case basic(writable: Bool, executable: Bool)
    /// Copy-on-write: readable, never writable, marked with ``EntryBits/copyOnWrite`` so a write fault can be
    /// recognised and resolved by copying the frame.
    case copyOnWrite(executable: Bool)
    /// No mapping: mapping this kind clears the entries.
    case unmapped

    /// Readable only.
    public static let readOnly = MappingKind.basic(writable: false, executable: false)
    /// Readable and writable, not executable.
    public static let readWrite = MappingKind.basic(writable: true, executable: false)
    /// Readable and executable.
    public static let readExecute = MappingKind.basic(writable: false, executable: true)
    /// Readable, writable and executable.
    public static let readWriteExecute = MappingKind.basic(writable: true, executable: true)

    /// Whether a write through this mapping is allowed without a fault.
    public var isWritable: Bool {
        if case .basic(let writable, _) = self { return writable }
        return false
    }

    /// Whether instruction fetches are allowed (always true for present pages on i686, which has no NX).
    public var isExecutable: Bool {
        switch self {
        case .basic(_, let executable), .copyOnWrite(let executable): executable
        case .unmapped: false
        }
    }

    /// `r`, `w`, `x` and `c` letters as the CLI and the table dump spell them, e.g. `rw-`, `r-xc`.
    public var description: String {
        switch self {
        case .basic(let w, let x): "r" + (w ? "w" : "-") + (x ? "x" : "-")
        case .copyOnWrite(let x): "r-" + (x ? "x" : "-") + "c"
        case .unmapped: "---"
        }
    }
}

/// One range of virtual address space mapped onto physical memory: a value, as the engine takes it.
public struct Mapping: Hashable, Sendable, CustomStringConvertible {
    /// First physical address (ignored for ``MappingKind/unmapped``).
    public var physicalBase: UInt64
    /// First virtual address, as software writes it (amd64 upper-half addresses sign-extended).
    public var virtualBase: UInt64
    /// Length in bytes; a multiple of 4 KiB.
    public var length: UInt64
    /// Permissions.
    public var kind: MappingKind
    /// Whether user mode (CPL 3) may access it.
    public var userAccessible: Bool

    /// A mapping of `length` bytes from `virtualBase` onto `physicalBase`.
    /// - Parameters:
    ///   - physicalBase: the first physical address; a multiple of 4 KiB.
    ///   - virtualBase: the first virtual address; a multiple of 4 KiB.
    ///   - length: bytes; a multiple of 4 KiB.
    ///   - kind: the permissions.
    ///   - userAccessible: whether user mode may access it.
    public init(
        physicalBase: UInt64, virtualBase: UInt64, length: UInt64, kind: MappingKind,
        userAccessible: Bool = false
    ) {
        self.physicalBase = physicalBase
        self.virtualBase = virtualBase
        self.length = length
        self.kind = kind
        self.userAccessible = userAccessible
    }

    /// The identity mapping of `[base, base + length)`.
    /// - Parameters:
    ///   - base: the first address, virtual and physical; a multiple of 4 KiB.
    ///   - length: bytes; a multiple of 4 KiB.
    ///   - kind: the permissions.
    ///   - userAccessible: whether user mode may access it.
    public static func identity(_ base: UInt64, length: UInt64, kind: MappingKind, userAccessible: Bool = false)
        -> Mapping
    {
        Mapping(physicalBase: base, virtualBase: base, length: length, kind: kind, userAccessible: userAccessible)
    }

    /// `va X -> pa Y len L` and the permissions.
    public var description: String {
        "va \(hex(virtualBase)) -> pa \(hex(physicalBase)) len \(hex(length)) \(kind)\(userAccessible ? " user" : "")"
    }
}

/// The size of one leaf: what a single entry maps.
public enum LeafSize: Int, Hashable, Sendable, Comparable, CustomStringConvertible {
    /// 4 KiB: a page-table entry.
    case size4K
    /// 2 MiB: an amd64 page-directory entry with PS.
    case size2M
    /// 4 MiB: an i686 page-directory entry with PS (needs CR4.PSE).
    case size4M
    /// 1 GiB: an amd64 PDPT entry with PS (needs CPUID Page1GB).
    case size1G

    /// Bytes covered by one leaf of this size.
    @inlinable public var byteCount: UInt64 {
        switch self {
        case .size4K: 1 << 12
        case .size2M: 1 << 21
        case .size4M: 1 << 22
        case .size1G: 1 << 30
        }
    }

    /// Orders sizes by the bytes they map.
    public static func < (a: LeafSize, b: LeafSize) -> Bool { a.byteCount < b.byteCount }

    /// `4 KiB`, `2 MiB`, `4 MiB`, `1 GiB`.
    public var description: String {
        switch self {
        case .size4K: "4 KiB"
        case .size2M: "2 MiB"
        case .size4M: "4 MiB"
        case .size1G: "1 GiB"
        }
    }
}

/// Which large leaves the engine may write. 4 KiB leaves are always allowed.
///
/// The boot layer derives it from the vCPU's CPUID: 1 GiB leaves need CPUID.80000001H:EDX.Page1GB[bit 26];
/// 4 MiB leaves on i686 need CPUID.01H:EDX.PSE[bit 3] and CR4.PSE. Never allow a size the CPU cannot walk.
public struct AllowedLeafSizes: OptionSet, Hashable, Sendable {
    /// One bit per large leaf size.
    public let rawValue: UInt8
    /// The set whose bits are `rawValue`.
    /// - Parameter rawValue: bit 0 for 2 MiB, bit 1 for 1 GiB, bit 2 for 4 MiB.
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The set allowing `size` and no other large leaf: empty for 4 KiB leaves (always allowed).
    /// - Parameter size: the one leaf size to allow.
    @inlinable
    public init(only size: LeafSize) {
        switch size {
        case .size4K: self = []
        case .size2M: self = .size2M
        case .size4M: self = .size4M
        case .size1G: self = .size1G
        }
    }

    /// amd64 PD leaves.
    @inlinable public static var size2M: AllowedLeafSizes { AllowedLeafSizes(rawValue: 1 << 0) }
    /// amd64 PDPT leaves.
    @inlinable public static var size1G: AllowedLeafSizes { AllowedLeafSizes(rawValue: 1 << 1) }
    /// i686 PD leaves (need CR4.PSE).
    @inlinable public static var size4M: AllowedLeafSizes { AllowedLeafSizes(rawValue: 1 << 2) }

    /// Force 4 KiB leaves everywhere.
    @inlinable public static var smallPagesOnly: AllowedLeafSizes { [] }
    /// Every large leaf of every mode.
    @inlinable public static var all: AllowedLeafSizes { [.size2M, .size1G, .size4M] }

    /// Whether leaves of `size` may be written.
    /// - Parameter size: a leaf size.
    @inlinable public func allows(_ size: LeafSize) -> Bool {
        switch size {
        case .size4K: true
        case .size2M: contains(.size2M)
        case .size4M: contains(.size4M)
        case .size1G: contains(.size1G)
        }
    }
}

/// One present leaf (or the part of it inside the range asked for), as the CPU would see it.
public struct Translation: Hashable, Sendable, CustomStringConvertible {
    /// First virtual address, canonical (amd64 upper half sign-extended).
    public var virtualAddress: UInt64
    /// The physical address `virtualAddress` translates to.
    public var physicalAddress: UInt64
    /// Bytes covered.
    public var length: UInt64
    /// Permissions, as the CPU enforces them (the leaf's, limited by every entry above it).
    public var kind: MappingKind
    /// Whether user mode may access it (U/S of the leaf and every entry above it).
    public var userAccessible: Bool
    /// Size of the leaf entry that maps it.
    public var leafSize: LeafSize

    /// A translation of `length` bytes from `virtualAddress` to `physicalAddress`.
    /// - Parameters:
    ///   - virtualAddress: the first virtual address, canonical.
    ///   - physicalAddress: where `virtualAddress` translates to.
    ///   - length: bytes covered.
    ///   - kind: the permissions.
    ///   - userAccessible: whether user mode may access it.
    ///   - leafSize: the size of the leaf entry that maps it.
    public init(
        virtualAddress: UInt64, physicalAddress: UInt64, length: UInt64, kind: MappingKind,
        userAccessible: Bool, leafSize: LeafSize
    ) {
        self.virtualAddress = virtualAddress
        self.physicalAddress = physicalAddress
        self.length = length
        self.kind = kind
        self.userAccessible = userAccessible
        self.leafSize = leafSize
    }

    /// Whether `next` continues this translation: it starts where this one ends, virtually and physically,
    /// with the same kind, U/S and leaf size, so the two can be reported as one.
    /// - Parameter next: the translation that follows.
    @inlinable
    public func continues(with next: Translation) -> Bool {
        virtualAddress &+ length == next.virtualAddress && physicalAddress &+ length == next.physicalAddress
            && kind == next.kind && userAccessible == next.userAccessible && leafSize == next.leafSize
    }

    /// The same range as a ``Mapping`` value (leaf size dropped).
    public var mapping: Mapping {
        Mapping(
            physicalBase: physicalAddress, virtualBase: virtualAddress, length: length, kind: kind,
            userAccessible: userAccessible)
    }

    /// `va X -> pa Y len L`, the permissions and the leaf size.
    public var description: String {
        "va \(hex(virtualAddress)) -> pa \(hex(physicalAddress)) len \(hex(length)) \(kind)\(userAccessible ? " user" : "") (\(leafSize) leaf)"
    }
}

/// `0x` and lowercase hex digits.
@usableFromInline func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
