internal import CKVM

/// The x87 and SSE state in FXSAVE form: what `KVM_GET_FPU` reports and `KVM_SET_FPU` restores.
///
/// Use it where ``XSaveArea`` (`KVM_CAP_XSAVE`) is absent; XSAVE covers it and more. The kernel type is
/// `struct kvm_fpu`. Byte encoding (416 bytes, its layout): fpr[8][16] at 0; fcw u16 at 128; fsw u16 at
/// 130; ftwx u8 at 132; pad; last_opcode u16 at 134; last_ip u64 at 136; last_dp u64 at 144;
/// xmm[16][16] at 152; mxcsr u32 at 408; pad to 416.
public struct FPUState: Hashable, Sendable, KVMByteEncodable {
    /// ST0-ST7 (MM0-MM7): 8 registers of 16 bytes each (80 bits used), 128 bytes.
    public var x87Registers: [UInt8] = Array(repeating: 0, count: 128)
    /// FCW, the x87 control word.
    public var fcw: UInt16 = 0
    /// FSW, the x87 status word.
    public var fsw: UInt16 = 0
    /// The abridged x87 tag word (one bit per register, FXSAVE format).
    public var ftwx: UInt8 = 0
    /// The opcode of the last x87 instruction.
    public var lastOpcode: UInt16 = 0
    /// The address of the last x87 instruction.
    public var lastIP: UInt64 = 0
    /// The address of the last x87 memory operand.
    public var lastDP: UInt64 = 0
    /// XMM0-XMM15: 16 registers of 16 bytes each, 256 bytes.
    public var xmmRegisters: [UInt8] = Array(repeating: 0, count: 256)
    /// MXCSR, the SSE control and status register.
    public var mxcsr: UInt32 = 0

    /// All state zero.
    public init() {}

    /// The size of the encoding: `sizeof(struct kvm_fpu)`.
    public static let byteCount = 416

    /// Decodes the 416-byte encoding (`struct kvm_fpu`), or returns `nil` for a buffer of another length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self = decodeBytes(bytes) { Self(reading: &$0) }
    }

    /// The 416-byte encoding, laid out as `struct kvm_fpu`.
    public var bytes: [UInt8] { encodeBytes(count: Self.byteCount) { write(to: &$0) } }

    init(reading r: inout ByteReader) {
        x87Registers = r.readBytes(128)
        fcw = r.read(); fsw = r.read(); ftwx = r.read(); r.skip(1)
        lastOpcode = r.read(); lastIP = r.read(); lastDP = r.read()
        xmmRegisters = r.readBytes(256)
        mxcsr = r.read(); r.skip(4)
    }

    /// Traps if `x87Registers` is not 128 bytes or `xmmRegisters` not 256.
    func write(to w: inout ByteWriter) {
        w.write(bytes: x87Registers, count: 128)
        w.write(fcw); w.write(fsw); w.write(ftwx); w.skip(1)
        w.write(lastOpcode); w.write(lastIP); w.write(lastDP)
        w.write(bytes: xmmRegisters, count: 256)
        w.write(mxcsr); w.skip(4)
    }

    init(_ kernel: kvm_fpu) { self = decodeKernel(kernel) { Self(reading: &$0) } }

    var kernelValue: kvm_fpu {
        var kernel = kvm_fpu()
        encodeKernel(&kernel) { write(to: &$0) }
        return kernel
    }
}
