internal import CKVM

/// The guest's own debug registers: DR0-DR3 (breakpoint addresses), DR6 (status), DR7 (control).
///
/// What `KVM_GET_DEBUGREGS` reports and `KVM_SET_DEBUGREGS` restores (the guest's view, not the host
/// debugger's breakpoints of ``GuestDebug``). The kernel type is `struct kvm_debugregs`. Byte encoding
/// (128 bytes, its layout): db[0...3] u64 at 0, 8, 16, 24; dr6 u64 at 32; dr7 u64 at 40; flags u64 at 48;
/// reserved to 128.
public struct DebugRegisters: Hashable, Sendable, KVMByteEncodable {
    /// DR0.
    public var dr0: UInt64 = 0
    /// DR1.
    public var dr1: UInt64 = 0
    /// DR2.
    public var dr2: UInt64 = 0
    /// DR3.
    public var dr3: UInt64 = 0
    /// DR6, the debug status register.
    public var dr6: UInt64 = 0
    /// DR7, the debug control register.
    public var dr7: UInt64 = 0
    /// `kvm_debugregs.flags` (currently always 0).
    public var flags: UInt64 = 0

    /// All registers zero.
    public init() {}

    /// The size of the encoding: `sizeof(struct kvm_debugregs)`.
    public static let byteCount = 128

    /// Decodes the 128-byte encoding (`struct kvm_debugregs`), or returns `nil` for a buffer of another length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self = decodeBytes(bytes) { Self(reading: &$0) }
    }

    /// The 128-byte encoding, laid out as `struct kvm_debugregs`.
    public var bytes: [UInt8] { encodeBytes(count: Self.byteCount) { write(to: &$0) } }

    init(reading r: inout ByteReader) {
        dr0 = r.read(); dr1 = r.read(); dr2 = r.read(); dr3 = r.read()
        dr6 = r.read(); dr7 = r.read(); flags = r.read()
        r.skip(72)
    }

    func write(to w: inout ByteWriter) {
        w.write(dr0); w.write(dr1); w.write(dr2); w.write(dr3)
        w.write(dr6); w.write(dr7); w.write(flags)
        w.skip(72)
    }

    init(_ kernel: kvm_debugregs) { self = decodeKernel(kernel) { Self(reading: &$0) } }

    var kernelValue: kvm_debugregs {
        var kernel = kvm_debugregs()
        encodeKernel(&kernel) { write(to: &$0) }
        return kernel
    }
}
