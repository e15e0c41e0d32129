internal import CKVM

/// One extended control register: XCR0 (index 0) selects the state components XSAVE manages.
public struct ExtendedControlRegister: Hashable, Sendable {
    /// The register number (the ECX of `XSETBV`).
    public var index: UInt32
    /// Its value.
    public var value: UInt64
    /// Makes a register value.
    public init(index: UInt32, value: UInt64) {
        self.index = index
        self.value = value
    }
}

/// The vCPU's extended control registers: what `KVM_GET_XCRS` reports and `KVM_SET_XCRS` restores.
///
/// The kernel type is `struct kvm_xcrs`. Byte encoding (392 bytes, its layout): nr_xcrs u32 at 0, flags
/// u32 at 4, then 16 slots of 16 bytes from 8 (xcr u32, reserved u32, value u64), the first nr_xcrs used,
/// then 128 bytes of padding.
public struct ExtendedControlRegisters: Hashable, Sendable, KVMByteEncodable {
    /// The most registers the kernel structure holds (`KVM_MAX_XCRS`).
    public static let capacity = 16
    /// The size of the encoding: `sizeof(struct kvm_xcrs)`.
    public static let byteCount = 392

    /// `kvm_xcrs.flags` (currently always 0).
    public var flags: UInt32 = 0
    /// The registers, at most ``capacity``.
    public var registers: [ExtendedControlRegister] = []

    /// Makes a set of registers; traps if there are more than ``capacity``.
    public init(flags: UInt32 = 0, registers: [ExtendedControlRegister] = []) {
        precondition(registers.count <= Self.capacity, "at most \(Self.capacity) extended control registers")
        self.flags = flags
        self.registers = registers
    }

    /// Decodes the 392-byte encoding (`struct kvm_xcrs`), or returns `nil` for a buffer of another length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        guard let value = decodeBytes(bytes, { Self(reading: &$0) }) else { return nil }
        self = value
    }

    /// The 392-byte encoding, laid out as `struct kvm_xcrs`.
    public var bytes: [UInt8] { encodeBytes(count: Self.byteCount) { write(to: &$0) } }

    init?(reading r: inout ByteReader) {
        let count = Int(r.read(UInt32.self))
        guard count <= Self.capacity else { return nil }
        flags = r.read()
        registers = (0..<count).map { _ in
            let index: UInt32 = r.read()
            r.skip(4)
            return ExtendedControlRegister(index: index, value: r.read())
        }
        r.skip((Self.capacity - count) * 16 + 128)
    }

    func write(to w: inout ByteWriter) {
        precondition(registers.count <= Self.capacity, "at most \(Self.capacity) extended control registers")
        w.write(UInt32(registers.count))
        w.write(flags)
        for register in registers {
            w.write(register.index); w.skip(4); w.write(register.value)
        }
        w.skip((Self.capacity - registers.count) * 16 + 128)
    }

    /// Traps if the kernel reported more than ``capacity`` registers (it never does).
    init(_ kernel: kvm_xcrs) {
        guard let value = decodeKernel(kernel, { Self(reading: &$0) }) else {
            preconditionFailure("KVM_GET_XCRS reported more than KVM_MAX_XCRS registers")
        }
        self = value
    }

    var kernelValue: kvm_xcrs {
        var kernel = kvm_xcrs()
        encodeKernel(&kernel) { write(to: &$0) }
        return kernel
    }
}
