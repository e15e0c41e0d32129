/// Every register of a target, as the `g` packet carries them: little-endian values back to back, in the
/// order of ``GDBArchitecture/registers``.
///
/// Read and write values by register (``subscript(_:)``) or as raw bytes (``bytes(of:)``); the whole file
/// is ``bytes``. Naming a register the architecture lacks (``GDBRegister/r8`` on i386) is a programmer
/// error and traps; ask ``GDBArchitecture/description(of:)`` first when unsure.
public struct GDBRegisterFile: Hashable, Sendable {
    /// The architecture whose layout the bytes follow.
    public let architecture: GDBArchitecture
    /// The `g` packet's data: ``GDBArchitecture/registerFileByteCount`` bytes.
    public private(set) var bytes: [UInt8]

    /// A register file with every register zero.
    public init(architecture: GDBArchitecture) {
        self.architecture = architecture
        self.bytes = Array(repeating: 0, count: architecture.registerFileByteCount)
    }

    /// A register file from a `g` / `G` packet's data, or `nil` if `bytes` is not exactly
    /// ``GDBArchitecture/registerFileByteCount`` long.
    public init?(architecture: GDBArchitecture, bytes: [UInt8]) {
        guard bytes.count == architecture.registerFileByteCount else { return nil }
        self.architecture = architecture
        self.bytes = bytes
    }

    /// The low 64 bits of a register (zero-extended when it is narrower). Setting it stores the value's low
    /// bytes and clears the register's bytes above the eighth (for ``GDBRegister/st0`` and the XMM registers).
    public subscript(_ register: GDBRegister) -> UInt64 {
        get {
            let description = layout(register)
            var value: UInt64 = 0
            for index in 0..<min(description.byteCount, 8) {
                value |= UInt64(bytes[description.offset + index]) << (8 * UInt64(index))
            }
            return value
        }
        set {
            let description = layout(register)
            for index in 0..<description.byteCount {
                bytes[description.offset + index] =
                    index < 8 ? UInt8(truncatingIfNeeded: newValue >> (8 * UInt64(index))) : 0
            }
        }
    }

    /// The raw little-endian bytes of a register (10 for the x87 registers, 16 for XMM).
    public func bytes(of register: GDBRegister) -> [UInt8] {
        let description = layout(register)
        return Array(bytes[description.offset..<description.offset + description.byteCount])
    }

    /// Replaces the raw bytes of a register; traps unless `newBytes` has the register's width.
    public mutating func setBytes(_ newBytes: [UInt8], of register: GDBRegister) {
        let description = layout(register)
        precondition(newBytes.count == description.byteCount, "\(description.name) is \(description.byteCount) bytes")
        bytes.replaceSubrange(description.offset..<description.offset + description.byteCount, with: newBytes)
    }

    /// The raw bytes of register number `number` (a `p` packet), or `nil` past the last register.
    public func bytes(ofNumber number: Int) -> [UInt8]? {
        let registers = architecture.registers
        guard registers.indices.contains(number) else { return nil }
        return bytes(of: registers[number].register)
    }

    /// Replaces register number `number` (a `P` packet); returns `false` if there is no such register or
    /// `newBytes` is not its width.
    public mutating func setBytes(_ newBytes: [UInt8], ofNumber number: Int) -> Bool {
        let registers = architecture.registers
        guard registers.indices.contains(number), registers[number].byteCount == newBytes.count else { return false }
        setBytes(newBytes, of: registers[number].register)
        return true
    }

    private func layout(_ register: GDBRegister) -> GDBRegisterDescription {
        guard let description = architecture.description(of: register) else {
            preconditionFailure("\(architecture) has no register \(register)")
        }
        return description
    }
}
