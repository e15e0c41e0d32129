/// One model-specific register and its value (`struct kvm_msr_entry`).
public struct MSREntry: Hashable, Sendable {
    /// The MSR number (the ECX of `RDMSR` / `WRMSR`), e.g. `0xC000_0080` for IA32_EFER.
    public var index: UInt32
    /// The value.
    public var value: UInt64
    /// Makes an entry.
    public init(index: UInt32, value: UInt64) {
        self.index = index
        self.value = value
    }
}

/// A list of model-specific registers with their values: what `KVM_GET_MSRS` reports and `KVM_SET_MSRS`
/// restores.
///
/// Which MSRs a snapshot needs is the caller's choice, usually ``KVMSystem/msrIndexList()``, minus those
/// the vCPU refuses (``VCPU/modelSpecificRegisters(_:)`` returns how far it got). The kernel type is
/// `struct kvm_msrs` followed by its entries. Byte encoding (8 + 16 × count bytes, its layout): nmsrs u32
/// at 0, pad u32, then per entry: index u32, reserved u32, data u64.
public struct ModelSpecificRegisters: Hashable, Sendable, KVMByteEncodable {
    /// The registers, in order.
    public var entries: [MSREntry]

    /// Makes a list.
    public init(_ entries: [MSREntry] = []) { self.entries = entries }

    /// The value of MSR `index`, if the list holds it.
    public subscript(index: UInt32) -> UInt64? {
        entries.first { $0.index == index }?.value
    }

    /// Decodes the encoding (`struct kvm_msrs` and its entries), or returns `nil` when the length is not
    /// 8 + 16 × the count it holds.
    public init?(bytes: [UInt8]) {
        guard bytes.count >= 8, (bytes.count - 8) % 16 == 0 else { return nil }
        guard
            let value = decodeBytes(
                bytes,
                { r -> Self? in
                    let count = Int(r.read(UInt32.self))
                    guard count == (bytes.count - 8) / 16 else { return nil }
                    r.skip(4)
                    return Self(reading: &r, count: count)
                })
        else { return nil }
        self = value
    }

    /// The encoding: 8 + 16 × count bytes, laid out as `struct kvm_msrs` followed by its entries.
    public var bytes: [UInt8] {
        encodeBytes(count: 8 + 16 * entries.count) { w in
            w.write(UInt32(entries.count))
            w.skip(4)
            for entry in entries {
                w.write(entry.index); w.skip(4); w.write(entry.value)
            }
        }
    }

    /// Reads `count` entries (after the header).
    init(reading r: inout ByteReader, count: Int) {
        entries = (0..<count).map { _ in
            let index: UInt32 = r.read()
            r.skip(4)
            return MSREntry(index: index, value: r.read())
        }
    }
}
