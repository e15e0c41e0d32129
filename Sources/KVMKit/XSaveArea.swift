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

    /// The x87 and SSE state in the legacy region (bytes 0-415, the FXSAVE layout of Intel SDM Vol. 1
    /// §10.5.1: FCW, FSW, abridged FTW, FOP, FIP and FDP as 64-bit offsets, MXCSR, ST0-ST7, XMM0-XMM15).
    ///
    /// Unlike `KVM_GET_FPU` / `KVM_SET_FPU` (``FPUState``), which leave MXCSR out, this carries every field.
    /// Setting it also sets XSTATE_BV bits 0 (x87) and 1 (SSE), so that ``VCPU/setXSave(_:)`` loads these
    /// bytes rather than the components' initial state.
    public var legacyState: FPUState {
        get {
            decodeBytes(Array(region[0..<416])) { r in
                var state = FPUState()
                state.fcw = r.read(); state.fsw = r.read(); state.ftwx = r.read(); r.skip(1)
                state.lastOpcode = r.read(); state.lastIP = r.read(); state.lastDP = r.read()
                state.mxcsr = r.read(); r.skip(4)
                state.x87Registers = r.readBytes(128)
                state.xmmRegisters = r.readBytes(256)
                return state
            }
        }
        set {
            precondition(newValue.x87Registers.count == 128 && newValue.xmmRegisters.count == 256, "FPU register sizes")
            func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
                for index in 0..<MemoryLayout<T>.size {
                    region[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index))
                }
            }
            put(newValue.fcw, at: 0)
            put(newValue.fsw, at: 2)
            put(newValue.ftwx, at: 4)
            put(newValue.lastOpcode, at: 6)
            put(newValue.lastIP, at: 8)
            put(newValue.lastDP, at: 16)
            put(newValue.mxcsr, at: 24)
            region.replaceSubrange(32..<160, with: newValue.x87Registers)
            region.replaceSubrange(160..<416, with: newValue.xmmRegisters)
            xstateBV |= 0b11
        }
    }
}
