import PageTables

/// A value that crosses the boundary in a call: an integer, bytes, or a string (UTF-8 bytes).
public enum CallValue: Equatable, Sendable, ExpressibleByIntegerLiteral, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    /// A signed 64-bit integer, passed in its descriptor (kind 1).
    case int(Int64)
    /// Bytes, copied into the call area (kind 2).
    case bytes([UInt8])
    /// A string, copied into the call area as its UTF-8 bytes (kind 3).
    case string(String)
    /// No value (a function that returns nothing).
    case none

    /// An integer value: `try machine.call("add", 2, 3)`.
    public init(integerLiteral value: Int64) { self = .int(value) }
    /// A string value: `try machine.call("upper", "hello")`.
    public init(stringLiteral value: String) { self = .string(value) }

    /// The integer, if this is one.
    public var int: Int64? { if case .int(let value) = self { value } else { nil } }
    /// The bytes of a byte or string value.
    public var bytes: [UInt8]? {
        switch self {
        case .bytes(let bytes): bytes
        case .string(let string): Array(string.utf8)
        default: nil
        }
    }
    /// The string, decoding bytes as UTF-8 (with replacement characters for what is not).
    public var string: String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

    /// `42`, `"text"`, `3 bytes` or `none`.
    public var description: String {
        switch self {
        case .int(let value): "\(value)"
        case .bytes(let bytes): "\(bytes.count) bytes"
        case .string(let string): "\"\(string)\""
        case .none: "none"
        }
    }

    /// The kind field of the call ABI: 0 none, 1 integer, 2 bytes, 3 string.
    var kind: UInt32 {
        switch self {
        case .none: 0
        case .int: 1
        case .bytes: 2
        case .string: 3
        }
    }
}

/// A guest function, resolved once by name (``Machine/function(_:)``) and called by index.
public struct GuestFunction: Hashable, Sendable {
    /// Its index in the guest's export table.
    public let index: Int
    /// Its name.
    public let name: String
}

/// Why a call did not return a value.
public enum CallError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The guest has not said it is ready for calls (hypercall 6), or is running something else.
    case notReady
    /// The guest exports no function of that name.
    case unknownFunction(String)
    /// The arguments do not fit the guest's call area (`size` bytes needed, `capacity` available), or there
    /// are more than eight.
    case argumentsTooLarge(size: Int, capacity: Int)
    /// The guest function returned an error status (its own code).
    case guestError(status: UInt32)
    /// The guest wrote a result the host cannot read (a kind or length out of range).
    case badResult(String)
    /// The run ended some other way: a fault, the timeout, an interruption (the machine then needs a reset).
    case run(RunError)

    /// One line for a person.
    public var description: String {
        switch self {
        case .notReady: "the guest is not waiting for a call (it has not made the ready hypercall)"
        case .unknownFunction(let name): "the guest exports no function named '\(name)'"
        case .argumentsTooLarge(let size, let capacity):
            "the arguments need \(size) bytes of the call area, which holds \(capacity) (and at most 8 arguments)"
        case .guestError(let status): "the guest function failed with status \(status)"
        case .badResult(let detail): "the guest's result is unreadable: \(detail)"
        case .run(let error): "\(error)"
        }
    }
}

/// A host function the guest may call (hypercall 7): it gets the guest's arguments, copied out of guest
/// memory, and returns a value that is copied back; what it throws reaches the guest as status 4.
public typealias HostFunction = (_ machine: Machine, _ arguments: [CallValue]) throws -> CallValue

/// The guest's side of calls, as it announced it at the ready hypercall.
struct CallInterface: Equatable, Sendable {
    /// Exported names, by index.
    var names: [String]
    var indexByName: [String: Int]
    /// The call area: guest-physical start (contiguous) and size.
    var area: UInt64
    var size: UInt64
}

/// The call area's layout: function index (u32) at 0, argument count (u32) at 4, status (u32) at 8, result
/// kind (u32) at 12, result value or byte offset (u64) at 16, result length (u64) at 24, then eight 24-byte
/// argument descriptors from 32 (kind u32, reserved u32, value or offset u64, length u64), and the argument
/// bytes from 256.
enum CallArea {
    static let functionIndex: UInt64 = 0
    static let argumentCount: UInt64 = 4
    static let status: UInt64 = 8
    static let resultKind: UInt64 = 12
    static let resultValue: UInt64 = 16
    static let resultLength: UInt64 = 24
    static let arguments: UInt64 = 32
    static let argumentSize: UInt64 = 24
    static let maximumArguments = 8
    static let data: UInt64 = 256
    static let maximumExports = 256
    static let maximumNameLength = 64
}

extension Machine {
    /// Port 0x511: a guest function returned (the call area holds its status and result).
    static let returnPort: UInt16 = 0x511

    // MARK: Calling the guest

    /// The guest function called `name`, resolved once.
    /// - Throws: ``CallError/notReady`` before the guest's ready hypercall; ``CallError/unknownFunction(_:)``.
    public func function(_ name: String) throws(CallError) -> GuestFunction {
        guard let calls = callInterface else { throw .notReady }
        guard let index = calls.indexByName[name] else { throw .unknownFunction(name) }
        return GuestFunction(index: index, name: name)
    }

    /// The names the guest exports, in its table's order (empty before it is ready).
    public var exportedFunctions: [String] { callInterface?.names ?? [] }

    /// Calls the guest function `name` with `arguments` and returns its result.
    public func call(_ name: String, _ arguments: CallValue...) throws(CallError) -> CallValue {
        try call(try function(name), arguments)
    }

    /// Calls `function` with `arguments` (at most eight) and returns its result: the arguments are written
    /// into the guest's call area, the guest is entered once and runs until its function returns (one exit,
    /// unless the function itself makes more), and the result is read back, bounds-checked.
    ///
    /// The machine's timeout applies to each call. A fault, a timeout or an interruption mid-call leaves the
    /// machine needing a reset (``CallError/run(_:)`` with the cause; later calls get
    /// ``RunError/needsReset(after:)``).
    public func call(_ function: GuestFunction, _ arguments: [CallValue]) throws(CallError) -> CallValue {
        if let poisoned { throw .run(.needsReset(after: poisoned)) }
        guard let calls = callInterface, waitingForCall else { throw .notReady }
        guard function.index < calls.names.count else { throw .unknownFunction(function.name) }
        guard arguments.count <= CallArea.maximumArguments else {
            throw .argumentsTooLarge(size: arguments.count, capacity: CallArea.maximumArguments)
        }
        // Lay the arguments out: descriptors first, then the byte values one after another.
        var data = CallArea.data
        for value in arguments {
            if let bytes = value.bytes { data += (UInt64(bytes.count) + 7) & ~7 }
        }
        guard data <= calls.size else { throw .argumentsTooLarge(size: Int(data), capacity: Int(calls.size)) }
        let area = calls.area
        memory.store(UInt32(function.index), at: area + CallArea.functionIndex)
        memory.store(UInt32(arguments.count), at: area + CallArea.argumentCount)
        memory.store(UInt32(0), at: area + CallArea.status)
        memory.store(UInt32(0), at: area + CallArea.resultKind)
        data = CallArea.data
        for (index, value) in arguments.enumerated() {
            let slot = area + CallArea.arguments + UInt64(index) * CallArea.argumentSize
            memory.store(value.kind, at: slot)
            memory.store(UInt32(0), at: slot + 4)
            switch value {
            case .int(let integer):
                memory.store(UInt64(bitPattern: integer), at: slot + 8)
                memory.store(UInt64(0), at: slot + 16)
            case .none:
                memory.store(UInt64(0), at: slot + 8)
                memory.store(UInt64(0), at: slot + 16)
            case .bytes, .string:
                let bytes = value.bytes!
                memory.store(data, at: slot + 8)  // an offset into the call area
                memory.store(UInt64(bytes.count), at: slot + 16)
                memory.write(bytes, at: area + data)
                data += (UInt64(bytes.count) + 7) & ~7
            }
        }
        waitingForCall = false
        let outcome: RunOutcome
        do {
            outcome = try run()
        } catch {
            throw .run(error)
        }
        guard outcome == .returned else {
            // The guest halted or exited instead of returning: it can take no further call.
            callInterface = nil
            throw .run(.needsReset(after: "the guest ending (\(outcome)) instead of returning from \(function.name)"))
        }
        waitingForCall = true
        return try readResult(calls)
    }

    /// The result the guest wrote into the call area.
    func readResult(_ calls: CallInterface) throws(CallError) -> CallValue {
        let area = calls.area
        let status = memory.load(UInt32.self, at: area + CallArea.status) ?? 0
        guard status == 0 else { throw .guestError(status: status) }
        let kind = memory.load(UInt32.self, at: area + CallArea.resultKind) ?? 0
        let value = memory.load(UInt64.self, at: area + CallArea.resultValue) ?? 0
        let length = memory.load(UInt64.self, at: area + CallArea.resultLength) ?? 0
        switch kind {
        case 0: return .none
        case 1: return .int(Int64(bitPattern: value))
        case 2, 3:
            // Bytes live inside the call area: an offset and a length that must both stay inside it.
            guard value <= calls.size, length <= calls.size - value,
                let bytes = memory.read(at: area + value, count: Int(length))
            else { throw .badResult("\(length) bytes at offset \(value) leave the \(calls.size)-byte call area") }
            return kind == 2 ? .bytes(bytes) : .string(String(decoding: bytes, as: UTF8.self))
        default:
            throw .badResult("result kind \(kind)")
        }
    }

    // MARK: The guest's hypercalls

    /// Hypercall 6 (ready): records the guest's export table and call area, and ends the run with
    /// ``RunOutcome/ready``.
    func registerCalls(exports: UInt64, count: UInt64, area: UInt64, size: UInt64) throws(GuestFault) -> DeviceResponse {
        guard count <= UInt64(CallArea.maximumExports) else {
            throw fault(.badHypercall("\(count) exported functions, at most \(CallArea.maximumExports)"))
        }
        guard size >= 4096, size & 0xFFF == 0, size <= 1 << 20, area & 0xFFF == 0 else {
            throw fault(.badHypercall("call area \(hex(area)) + \(hex(size)) is not whole pages of 4 KiB to 1 MiB"))
        }
        // The call area must be writable guest memory, contiguous in guest-physical memory, so a call is a
        // few stores at a known place.
        let space = addressSpaceInCR3()
        guard let first = try? space.lookup(area), first.kind.isWritable else {
            throw fault(.badHypercall("call area \(hex(area)) is not mapped writable"))
        }
        var page: UInt64 = 4096
        while page < size {
            guard let next = try? space.lookup(area &+ page), next.kind.isWritable,
                next.physicalAddress == first.physicalAddress &+ page
            else { throw fault(.badHypercall("call area \(hex(area)) + \(hex(size)) is not contiguous writable memory")) }
            page += 4096
        }
        guard memory.contains(first.physicalAddress, count: size) else {
            throw fault(.badHypercall("call area \(hex(area)) is not in RAM"))
        }
        var names: [String] = []
        var indexByName: [String: Int] = [:]
        for index in 0..<count {
            guard let entry = readVirtual(exports &+ index * 32, count: 32) else {
                throw fault(.badHypercall("export table entry \(index) at \(hex(exports &+ index * 32)) is not mapped"))
            }
            let nameAddress = littleEndian(entry[0..<8]), nameLength = littleEndian(entry[8..<16])
            guard nameLength >= 1, nameLength <= UInt64(CallArea.maximumNameLength),
                let bytes = readVirtual(nameAddress, count: Int(nameLength)),
                let name = String(validating: bytes, as: UTF8.self), indexByName[name] == nil
            else { throw fault(.badHypercall("export \(index) has no readable, unique name of 1 to 64 bytes")) }
            names.append(name)
            indexByName[name] = Int(index)
        }
        callInterface = CallInterface(names: names, indexByName: indexByName, area: first.physicalAddress, size: size)
        waitingForCall = true
        return .stop(.ready)
    }

    /// Hypercall 7 (call a host function): `record` is the hypercall record; the arguments say where the
    /// name, the arguments and the result buffer are (guest-virtual, through the tables in CR3).
    /// Returns the status written to the record's result: 0 done, 1 no such function, 2 unreadable
    /// arguments, 3 the result does not fit, 4 the host function failed.
    func callHost(
        name nameAddress: UInt64, nameLength: UInt64, arguments argumentAddress: UInt64, count: UInt64,
        result resultAddress: UInt64, capacity: UInt64
    ) -> UInt64 {
        guard nameLength >= 1, nameLength <= UInt64(CallArea.maximumNameLength),
            let nameBytes = readVirtual(nameAddress, count: Int(nameLength)),
            let name = String(validating: nameBytes, as: UTF8.self), let function = hostFunctions[name]
        else { return 1 }
        guard count <= UInt64(CallArea.maximumArguments),
            let descriptors = readVirtual(argumentAddress, count: Int(count) * 24)
        else { return 2 }
        var arguments: [CallValue] = []
        for index in 0..<Int(count) {
            let descriptor = descriptors[(index * 24)..<(index * 24 + 24)]
            let kind = littleEndian(descriptor.prefix(4))
            let value = littleEndian(descriptor.dropFirst(8).prefix(8))
            let length = littleEndian(descriptor.dropFirst(16))
            switch kind {
            case 0: arguments.append(.none)
            case 1: arguments.append(.int(Int64(bitPattern: value)))
            case 2, 3:
                guard length <= Self.maximumHostArgumentBytes, let bytes = readVirtual(value, count: Int(length)) else {
                    return 2
                }
                arguments.append(kind == 2 ? .bytes(bytes) : .string(String(decoding: bytes, as: UTF8.self)))
            default: return 2
            }
        }
        let result: CallValue
        do {
            result = try function(self, arguments)
        } catch {
            return 4
        }
        // The result buffer: kind u32, reserved u32, value or length u64, then the bytes.
        let bytes = result.bytes ?? []
        guard capacity >= 16, UInt64(bytes.count) <= capacity - 16 else { return 3 }
        var encoded = [UInt8](repeating: 0, count: 16)
        let word = result.int.map { UInt64(bitPattern: $0) } ?? UInt64(bytes.count)
        for byte in 0..<4 { encoded[byte] = UInt8(truncatingIfNeeded: result.kind >> (8 * UInt32(byte))) }
        for byte in 0..<8 { encoded[8 + byte] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(byte))) }
        guard writeVirtual(resultAddress, encoded + bytes) else { return 3 }
        return 0
    }

    /// Most bytes one host-function argument may carry.
    static let maximumHostArgumentBytes: UInt64 = 1 << 20

    // MARK: Host functions

    /// Lets the guest call `body` as `name` (hypercall 7). A later registration of the same name replaces it.
    public func register(_ name: String, _ body: @escaping HostFunction) {
        hostFunctions[name] = body
    }

    // MARK: Guest memory by virtual address

    /// `count` bytes at guest-virtual `address`, through the tables in CR3, page by page; `nil` if any byte
    /// is not mapped or not in RAM.
    public func readVirtual(_ address: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, let pieces = physicalPieces(of: address, count: count, writable: false) else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for piece in pieces {
            guard let read = memory.read(at: piece.physical, count: piece.range.count) else { return nil }
            bytes += read
        }
        return bytes
    }

    /// Writes `bytes` at guest-virtual `address`, through the tables in CR3; only where the guest itself may
    /// write (a read-only or copy-on-write page refuses). Returns false, having written nothing, otherwise.
    @discardableResult
    public func writeVirtual(_ address: UInt64, _ bytes: [UInt8]) -> Bool {
        guard let pieces = physicalPieces(of: address, count: bytes.count, writable: true) else { return false }
        for piece in pieces { memory.write(bytes[piece.range], at: piece.physical) }
        return true
    }

    /// Where the `count` bytes at guest-virtual `address` lie, through the tables in CR3: one piece per page
    /// (the frame's physical address and which of the bytes it holds), checked against RAM before any byte
    /// is touched. `nil` if any byte is not mapped, not in RAM, past the top of the address space, or, with
    /// `writable`, on a page the guest itself may not write.
    func physicalPieces(
        of address: UInt64, count: Int, writable: Bool
    ) -> [(physical: UInt64, range: Range<Int>)]? {
        let space = addressSpaceInCR3()
        var pieces: [(physical: UInt64, range: Range<Int>)] = []
        var offset = 0
        while offset < count {
            let (cursor, overflow) = address.addingReportingOverflow(UInt64(offset))
            guard !overflow, let translation = try? space.lookup(cursor), !writable || translation.kind.isWritable
            else { return nil }
            let chunk = min(Int(min(translation.length, 4096 - (cursor & 0xFFF))), count - offset)
            guard memory.contains(translation.physicalAddress, count: UInt64(chunk)) else { return nil }
            pieces.append((translation.physicalAddress, offset..<(offset + chunk)))
            offset += chunk
        }
        return pieces
    }
}

/// The little-endian integer in `bytes` (at most 8 of them).
func littleEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
}
