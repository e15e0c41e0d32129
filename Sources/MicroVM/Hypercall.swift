/// Hypercalls: a guest writes the guest-physical address of a record to ``Layout/hypercallPort``
/// (32-bit `out`); the host reads the record, acts, writes the result back into it, and resumes the guest.
///
/// Record (little-endian, 64 bytes, 8-byte aligned): u32 operation, u32 argument count N (at most 6),
/// u64 result, then N u64 arguments.
public enum HypercallOperation: UInt32, Sendable {
    /// Report values to the host (tests read them from ``Machine/reports``). Result 0.
    case report = 1
}

extension Machine {
    func hypercall(recordAddress: UInt64) throws(MachineError) {
        guard recordAddress & 7 == 0, memory.contains(recordAddress, count: 64),
            let rawOperation = memory.load(UInt32.self, at: recordAddress),
            let count = memory.load(UInt32.self, at: recordAddress + 4)
        else {
            throw .badHypercall("record at \(hex(recordAddress)) is not an aligned 64-byte block inside RAM")
        }
        guard count <= 6 else { throw .badHypercall("\(count) arguments, at most 6") }
        let arguments = (0..<UInt64(count)).map { memory.load(UInt64.self, at: recordAddress + 16 + $0 * 8) ?? 0 }
        guard let operation = HypercallOperation(rawValue: rawOperation) else {
            throw .badHypercall("unknown operation \(rawOperation) at \(hex(recordAddress))")
        }
        switch operation {
        case .report:
            reports.append(arguments)
            memory.store(UInt64(0), at: recordAddress + 8)
        }
    }
}
