/// Software breakpoints a target plants itself as `INT3` (0xCC) bytes, with the bytes they replaced, so
/// that memory reads and writes through the stub see the guest's own code (as gdb expects of a stub that
/// accepts `Z0`).
///
/// A ``GDBTarget`` keeps one of these and routes its memory calls through it:
/// - `insertBreakpoint(.software, ...)`: ``insert(at:reading:writing:)``;
/// - `removeBreakpoint(.software, ...)`: ``remove(at:writing:)``;
/// - `readMemory`: read guest memory, then ``hiding(_:at:)``;
/// - `writeMemory`: ``planting(_:at:)`` on the bytes, then write the result;
/// - a stop with the program counter on ``contains(_:)`` (an `INT3` trap, or, on a KVM that cannot
///   emulate `INT3`, an emulation failure there) is ``GDBStopReason/softwareBreakpoint``.
public struct GDBSoftwareBreakpoints: Hashable, Sendable {
    /// The x86 breakpoint instruction, `INT3`.
    public static let instruction: UInt8 = 0xCC

    /// The original byte under each planted breakpoint, by guest-virtual address.
    public private(set) var originals: [UInt64: UInt8] = [:]

    /// No breakpoints.
    public init() {}

    /// Whether a breakpoint is planted at `address`.
    public func contains(_ address: UInt64) -> Bool { originals[address] != nil }

    /// Plants a breakpoint: saves the byte at `address` and writes `INT3` over it. Planting twice at one
    /// address does nothing the second time.
    ///
    /// - Parameters:
    ///   - address: the guest-virtual address of the instruction to stop at.
    ///   - reading: reads one byte of guest memory (throws for unmapped memory).
    ///   - writing: writes one byte of guest memory.
    /// - Throws: what `reading` or `writing` throws; nothing is recorded then.
    public mutating func insert(
        at address: UInt64, reading: (UInt64) throws -> UInt8, writing: (UInt64, UInt8) throws -> Void
    ) rethrows {
        guard originals[address] == nil else { return }
        let original = try reading(address)
        try writing(address, Self.instruction)
        originals[address] = original
    }

    /// Removes a breakpoint: writes the saved byte back. Removing an absent one does nothing.
    public mutating func remove(at address: UInt64, writing: (UInt64, UInt8) throws -> Void) rethrows {
        guard let original = originals[address] else { return }
        try writing(address, original)
        originals[address] = nil
    }

    /// Removes every breakpoint (for a detach or a kill).
    public mutating func removeAll(writing: (UInt64, UInt8) throws -> Void) rethrows {
        for address in originals.keys.sorted() {
            try remove(at: address, writing: writing)
        }
    }

    /// Bytes read from guest memory at `address`, with each planted `INT3` replaced by the byte it hides.
    public func hiding(_ bytes: [UInt8], at address: UInt64) -> [UInt8] {
        guard !originals.isEmpty else { return bytes }
        var result = bytes
        for (offset, _) in bytes.enumerated() {
            let (target, overflow) = address.addingReportingOverflow(UInt64(offset))
            if !overflow, let original = originals[target] { result[offset] = original }
        }
        return result
    }

    /// Bytes to write at `address` with the planted breakpoints kept: a byte written over a breakpoint
    /// becomes its new original, and the `INT3` stays in memory.
    public mutating func planting(_ bytes: [UInt8], at address: UInt64) -> [UInt8] {
        guard !originals.isEmpty else { return bytes }
        var result = bytes
        for (offset, byte) in bytes.enumerated() {
            let (target, overflow) = address.addingReportingOverflow(UInt64(offset))
            if !overflow, originals[target] != nil {
                originals[target] = byte
                result[offset] = Self.instruction
            }
        }
        return result
    }
}
