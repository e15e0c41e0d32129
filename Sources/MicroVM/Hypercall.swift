import PageTables

/// Hypercalls: a guest writes the guest-physical address of a record to ``Layout/hypercallPort``
/// (32-bit `out`); the host reads the record, acts, writes the result into it, and resumes the guest.
///
/// Record (little-endian, 64 bytes, 8-byte aligned): u32 operation, u32 argument count N (at most 6),
/// u64 result, then N u64 arguments (docs/layout.md, "Hypercalls").
public enum HypercallOperation: UInt32, Sendable {
    /// Report values to the host (tests read them from ``Machine/reports``). Result 0.
    case report = 1
    /// An exception the guest cannot handle: vector, error code, CR2, RIP. Ends the run.
    case fatalException = 2
    /// Resolve a write fault on a copy-on-write page at CR2. Result 0 resolved, 1 not copy-on-write.
    case resolveCopyOnWrite = 3
}

extension Machine {
    /// Reports kept per run: room for every probe, with a bound a looping guest cannot grow past.
    static let maximumReports = 1 << 16

    func hypercall(recordAddress: UInt64) throws(MachineError) {
        guard recordAddress & 7 == 0, memory.contains(recordAddress, count: 64),
            let rawOperation = memory.load(UInt32.self, at: recordAddress),
            let count = memory.load(UInt32.self, at: recordAddress + 4)
        else {
            throw .badHypercall("record at \(hex(recordAddress)) is not an aligned 64-byte block inside RAM")
        }
        guard count <= 6 else { throw .badHypercall("\(count) arguments, at most 6") }
        let arguments = (0..<UInt64(count)).map { memory.load(UInt64.self, at: recordAddress + 16 + $0 * 8) ?? 0 }
        func argument(_ i: Int) -> UInt64 { i < arguments.count ? arguments[i] : 0 }
        guard let operation = HypercallOperation(rawValue: rawOperation) else {
            throw .badHypercall("unknown operation \(rawOperation) at \(hex(recordAddress))")
        }
        var result: UInt64 = 0
        switch operation {
        case .report:
            guard reports.count < Self.maximumReports else {
                throw .badHypercall("more than \(Self.maximumReports) reports")
            }
            reports.append(arguments)
        case .fatalException:
            throw describeException(
                vector: argument(0), errorCode: argument(1), cr2: argument(2), rip: argument(3))
        case .resolveCopyOnWrite:
            if let resolution = image.resolveCopyOnWrite(at: argument(0)) {
                copyOnWriteResolutions.append(resolution)
            } else {
                result = 1
            }
        }
        memory.store(result, at: recordAddress + 8)
    }

    /// One line for an exception the guest reported: page faults spelled out with the engine's view.
    func describeException(vector: UInt64, errorCode: UInt64, cr2: UInt64, rip: UInt64) -> MachineError {
        guard vector == 14 else {
            let names: [UInt64: String] = [
                0: "divide error (#DE)", 6: "invalid opcode (#UD)", 8: "double fault (#DF)",
                13: "general protection (#GP)", 3: "breakpoint (#BP)", 17: "alignment check (#AC)",
            ]
            return .guestException(
                description: "\(names[vector] ?? "vector \(vector)"), error code \(hex(errorCode)) at RIP \(hex(rip))")
        }
        return .pageFault(
            description: Self.pageFaultLine(
                errorCode: errorCode, address: cr2, rip: rip, translation: describeTranslation(of: cr2)))
    }

    /// `write to 0x40001000 (-> 0x201000, read-only, 4 KiB leaf) at RIP 0x100042`, from the #PF error code
    /// (Intel SDM Vol. 3A §4.7: P bit 0, W/R bit 1, U/S bit 2, I/D bit 4).
    public static func pageFaultLine(errorCode: UInt64, address: UInt64, rip: UInt64, translation: String) -> String {
        let access =
            errorCode & 0x10 != 0 ? "instruction fetch from" : errorCode & 0x2 != 0 ? "write to" : "read of"
        let mode = errorCode & 0x4 != 0 ? "user " : ""
        return "\(mode)\(access) \(hex(address)) \(translation) at RIP \(hex(rip))"
    }
}
