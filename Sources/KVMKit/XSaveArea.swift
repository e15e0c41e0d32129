/// The vCPU's extended processor state (x87, SSE, AVX, ...) in the XSAVE format: what `KVM_GET_XSAVE` /
/// `KVM_GET_XSAVE2` report and `KVM_SET_XSAVE` restores.
///
/// The kernel type is `struct kvm_xsave`: 4096 bytes, or the larger size `KVM_CHECK_EXTENSION
/// (KVM_CAP_XSAVE2)` reports when dynamically enabled features (AMX) need it. The layout inside is the
/// processor's (Intel SDM Vol. 1 §13.4, "XSAVE Area": the legacy FXSAVE region at 0, the XSAVE header at
/// 512, components at the offsets CPUID leaf 0DH gives), which is little-endian. Byte encoding: exactly
/// those bytes.
public struct XSaveArea: Hashable, Sendable, KVMByteEncodable {
    /// The size of `struct kvm_xsave` without extra components.
    public static let legacySize = 4096

    /// The area's bytes, at least ``legacySize`` and a multiple of 4.
    public private(set) var region: [UInt8]

    /// Makes an area from its bytes, or `nil` if fewer than 4096 or not a multiple of 4.
    public init?(bytes: [UInt8]) {
        guard bytes.count >= Self.legacySize, bytes.count % 4 == 0 else { return nil }
        region = bytes
    }

    /// The area's bytes as KVM reads and writes them.
    public var bytes: [UInt8] { region }

    /// MXCSR, the SSE control and status register (bytes 24-27 of the legacy region).
    public var mxcsr: UInt32 {
        get {
            decodeBytes(region) { r in
                r.skip(24); return r.read(UInt32.self)
            }
        }
        set { for index in 0..<4 { region[24 + index] = UInt8(truncatingIfNeeded: newValue >> (8 * index)) } }
    }

    /// XSTATE_BV, the bitmap of components present in the area (bytes 512-519, the XSAVE header): a
    /// component whose bit is clear is restored to its initial state, whatever its bytes say (MXCSR is
    /// restored when bit 1, SSE, or bit 2, AVX, is set).
    public var xstateBV: UInt64 {
        get {
            decodeBytes(region) { r in
                r.skip(512); return r.read(UInt64.self)
            }
        }
        set { for index in 0..<8 { region[512 + index] = UInt8(truncatingIfNeeded: newValue >> (8 * index)) } }
    }
}
