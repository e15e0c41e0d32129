// Calls (docs/layout.md, "Calls"): the guest side of the call ABI, amd64 only.
//
// A guest lists the functions it exports as a global array of `Export`s (name and closure; Embedded Swift lays
// such an array out at build time, so its elements ARE the export table the host reads) and hands it to
// `Calls.serve`, which reserves the call area on the heap, makes the ready hypercall (6) and never returns:
// each call the host makes enters its dispatch loop, which reads the function index, calls the function with
// the call area and writes port 0x511. Seven instructions: load the index, scale it, point RDI at the area,
// call through the table, load the port, `out`, jump back. An exported function reads its arguments and writes
// its result through its `CallFrame`; it calls host functions (hypercall 7) with `Host.call`.
//
//     let exports: [Export] = [
//         Export("add") { call in
//             guard let a = call.int(0), let b = call.int(1) else { return call.fail(CallStatus.badArguments) }
//             call.returnInt(a &+ b)
//         },
//     ]
//     func guestMain(_ boot: BootInfo) { Calls.serve(exports) }
//
// No heap after `serve` (a call allocates nothing) unless an exported function allocates itself.

#if arch(x86_64)

    import GuestSupport

    /// An exported function. A closure literal that captures nothing is one: a C function pointer, whose
    /// address the export table holds and the dispatch loop calls with the call area in RDI.
    typealias ExportedFunction = @convention(c) (CallFrame) -> Void

    extension Export: @retroactive @unchecked Sendable {
        /// The export `name` (1-64 bytes of UTF-8, unique in the table: the host checks both at the ready
        /// hypercall), run by `function`.
        init(_ name: StaticString, _ function: ExportedFunction) {
            self.init(
                name: name.utf8Start, nameLength: UInt64(truncatingIfNeeded: name.utf8CodeUnitCount),
                function: function, reserved: 0)
        }
    }

    /// The kind of an argument or a result (the call ABI's numbers).
    enum CallKind: UInt32 {
        case nothing = 0
        case int = 1
        case bytes = 2
        case string = 3
    }

    /// The statuses the runtime writes itself. A guest's own error codes are any others (the host reports a
    /// non-zero status as `CallError.guestError(status:)`).
    enum CallStatus {
        /// An argument is missing, of another kind, or not inside the call area.
        static let badArguments: UInt32 = 1
        /// The result does not fit in the room the call area has left.
        static let resultTooLarge: UInt32 = 2
    }

    /// Offsets in the call area (docs/layout.md, "Calls").
    enum CallArea {
        static let functionIndex = 0
        static let argumentCount = 4
        static let status = 8
        static let resultKind = 12
        static let resultValue = 16
        static let resultLength = 24
        static let arguments = 32
        static let argumentSize = 24
        static let maximumArguments = 8
        /// Where the host puts the arguments' bytes (each 8-aligned); the room after them is free.
        static let data = 256
    }

    enum Calls {
        /// Bytes in the call area (0 before `serve`): what every argument and result is checked against.
        nonisolated(unsafe) static var areaSize = 0

        /// Serves calls for ever: reserves a call area of `pages` pages (contiguous, from the heap), announces
        /// `exports` and the area to the host (hypercall 6, which ends the run: the host's `run()` returns
        /// `.ready`), then runs one function per entry.
        static func serve(_ exports: [Export], pages: Int = 2) -> Never {
            let size = pages &* 4096
            let area = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
            areaSize = size
            exports.withUnsafeBufferPointer { table in
                Hypercall.call(
                    .ready, count: 4, address(table.baseAddress), UInt64(truncatingIfNeeded: table.count),
                    address(area), UInt64(truncatingIfNeeded: size))
                let frame = CallFrame(area: area)
                let entries = table.baseAddress.unsafelyUnwrapped
                while true {
                    // The host checked the index against the table before it entered: no check here.
                    let index = Int(truncatingIfNeeded: area.load(as: UInt32.self))
                    entries[index].function(frame)
                    guest_call_return()
                }
            }
            Runtime.halt()  // not reached: the loop above never ends
        }

        /// A pointer as the u64 the host reads.
        @inline(__always)
        static func address(_ pointer: UnsafeRawPointer?) -> UInt64 {
            UInt64(truncatingIfNeeded: UInt(bitPattern: pointer))
        }
    }

    extension CallFrame {
        /// The arguments the host passed (at most 8).
        var argumentCount: Int {
            min(
                Int(truncatingIfNeeded: area.load(fromByteOffset: CallArea.argumentCount, as: UInt32.self)),
                CallArea.maximumArguments)
        }

        /// The kind of argument `index`; `nil` past the last argument or for a kind the ABI does not have.
        func kind(_ index: Int) -> CallKind? {
            guard let kind = rawKind(index) else { return nil }
            return CallKind(rawValue: kind)
        }

        /// Argument `index` if it is an integer.
        func int(_ index: Int) -> Int64? {
            guard rawKind(index) == CallKind.int.rawValue else { return nil }
            return area.load(fromByteOffset: descriptor(index) + 8, as: Int64.self)
        }

        /// The bytes of argument `index` if it is bytes or a string (where they lie in the call area): `nil`
        /// for another kind, or bytes that do not lie inside the call area.
        func bytes(_ index: Int) -> UnsafeRawBufferPointer? {
            guard let kind = rawKind(index), kind == CallKind.bytes.rawValue || kind == CallKind.string.rawValue,
                let range = byteRange(index)
            else { return nil }
            return UnsafeRawBufferPointer(start: area + range.offset, count: range.count)
        }

        /// The room after the arguments' bytes up to the end of the call area: for a result written in place,
        /// or as scratch memory during the call (a message for a host function, say).
        var freeSpace: UnsafeMutableRawBufferPointer {
            var start = CallArea.data
            var index = 0
            let count = argumentCount
            while index < count {
                if let kind = rawKind(index), kind == CallKind.bytes.rawValue || kind == CallKind.string.rawValue,
                    let range = byteRange(index)
                {
                    start = max(start, (range.offset &+ range.count &+ 7) & ~7)
                }
                index += 1
            }
            start = min(start, Calls.areaSize)
            return UnsafeMutableRawBufferPointer(start: area + start, count: Calls.areaSize &- start)
        }

        /// Returns the integer `value`.
        func returnInt(_ value: Int64) {
            area.storeBytes(of: CallKind.int.rawValue, toByteOffset: CallArea.resultKind, as: UInt32.self)
            area.storeBytes(of: value, toByteOffset: CallArea.resultValue, as: Int64.self)
        }

        /// Returns `bytes` as `kind` (`.bytes` or `.string`): bytes inside the call area where they are, others
        /// copied into the free space. Fails the call with `CallStatus.resultTooLarge` (and returns false) when
        /// they do not fit.
        @discardableResult
        func returnBytes(_ bytes: UnsafeRawBufferPointer, kind: CallKind = .bytes) -> Bool {
            let size = Calls.areaSize
            var offset = 0
            if let start = bytes.baseAddress, UnsafeRawPointer(area) <= start,
                UnsafeRawPointer(area).distance(to: start) <= size,
                bytes.count <= size - UnsafeRawPointer(area).distance(to: start)
            {
                offset = UnsafeRawPointer(area).distance(to: start)
            } else {
                let room = freeSpace
                guard bytes.count <= room.count else {
                    fail(CallStatus.resultTooLarge)
                    return false
                }
                room.copyMemory(from: bytes)
                offset = UnsafeRawPointer(area).distance(to: UnsafeRawPointer(room.baseAddress.unsafelyUnwrapped))
            }
            setResult(kind, offset: offset, count: bytes.count)
            return true
        }

        /// Returns `count` bytes as `kind`, written in place by `body` into the free space. Fails the call with
        /// `CallStatus.resultTooLarge` (and returns false, without calling `body`) when they do not fit.
        @discardableResult
        func returnBytes(count: Int, kind: CallKind = .bytes, _ body: (UnsafeMutableRawBufferPointer) -> Void) -> Bool {
            let room = freeSpace
            guard count >= 0, count <= room.count else {
                fail(CallStatus.resultTooLarge)
                return false
            }
            let start = room.baseAddress.unsafelyUnwrapped
            body(UnsafeMutableRawBufferPointer(start: start, count: count))
            setResult(kind, offset: UnsafeRawPointer(area).distance(to: UnsafeRawPointer(start)), count: count)
            return true
        }

        /// Returns a string literal (false, with `CallStatus.resultTooLarge`, when it does not fit).
        @discardableResult
        func returnString(_ text: StaticString) -> Bool {
            text.withUTF8Buffer { returnBytes(UnsafeRawBufferPointer($0), kind: .string) }
        }

        /// Ends the call with an error `status` (not 0): the host reports it, and reads no result.
        func fail(_ status: UInt32) {
            area.storeBytes(of: status, toByteOffset: CallArea.status, as: UInt32.self)
        }

        /// The offset of argument `index`'s descriptor.
        @inline(__always)
        private func descriptor(_ index: Int) -> Int { CallArea.arguments &+ index &* CallArea.argumentSize }

        /// The kind field of argument `index` as the host wrote it; `nil` unless 0 <= index < argumentCount.
        @inline(__always)
        private func rawKind(_ index: Int) -> UInt32? {
            // One unsigned comparison also refuses a negative index.
            guard UInt(bitPattern: index) < UInt(bitPattern: argumentCount) else { return nil }
            return area.load(fromByteOffset: descriptor(index), as: UInt32.self)
        }

        /// Where argument `index`'s bytes lie (offset in the call area, count), if entirely inside it.
        @inline(__always)
        private func byteRange(_ index: Int) -> (offset: Int, count: Int)? {
            let offset = area.load(fromByteOffset: descriptor(index) &+ 8, as: UInt64.self)
            let length = area.load(fromByteOffset: descriptor(index) &+ 16, as: UInt64.self)
            let size = UInt64(truncatingIfNeeded: Calls.areaSize)
            guard offset <= size, length <= size &- offset else { return nil }
            return (Int(truncatingIfNeeded: offset), Int(truncatingIfNeeded: length))
        }

        private func setResult(_ kind: CallKind, offset: Int, count: Int) {
            area.storeBytes(of: kind.rawValue, toByteOffset: CallArea.resultKind, as: UInt32.self)
            area.storeBytes(of: UInt64(truncatingIfNeeded: offset), toByteOffset: CallArea.resultValue, as: UInt64.self)
            area.storeBytes(of: UInt64(truncatingIfNeeded: count), toByteOffset: CallArea.resultLength, as: UInt64.self)
        }
    }

    // MARK: Host functions (hypercall 7)

    extension HostArgument {
        /// An integer argument.
        static func int(_ value: Int64) -> HostArgument {
            HostArgument(kind: CallKind.int.rawValue, reserved: 0, value: UInt64(bitPattern: value), length: 0)
        }

        /// Bytes (the host copies them out of guest memory at their address).
        static func bytes(_ bytes: UnsafeRawBufferPointer) -> HostArgument {
            HostArgument(
                kind: CallKind.bytes.rawValue, reserved: 0, value: Calls.address(bytes.baseAddress),
                length: UInt64(truncatingIfNeeded: bytes.count))
        }

        /// A string: its UTF-8 bytes.
        static func string(_ bytes: UnsafeRawBufferPointer) -> HostArgument {
            HostArgument(
                kind: CallKind.string.rawValue, reserved: 0, value: Calls.address(bytes.baseAddress),
                length: UInt64(truncatingIfNeeded: bytes.count))
        }

        /// A string literal.
        static func string(_ text: StaticString) -> HostArgument {
            HostArgument(
                kind: CallKind.string.rawValue, reserved: 0, value: Calls.address(text.utf8Start),
                length: UInt64(truncatingIfNeeded: text.utf8CodeUnitCount))
        }
    }

    /// What a host function returned.
    enum HostValue {
        case nothing
        case int(Int64)
        /// Bytes or a string, where they lie in the result buffer (valid until the next host call into it).
        case bytes(UnsafeRawBufferPointer)
        case string(UnsafeRawBufferPointer)
    }

    /// Why a host call returned no value: the hypercall's status (docs/layout.md, "Hypercalls", op 7), or a
    /// result the runtime cannot read.
    enum HostCallError: Error {
        /// 1: the host has no function of that name.
        case noSuchFunction
        /// 2: the host could not read the arguments (more than 8, or bytes not mapped).
        case badArguments
        /// 3: the result does not fit in the buffer, or the buffer is not writable.
        case resultDoesNotFit
        /// 4: the host function failed.
        case failed
        /// The host wrote a result kind or length the buffer cannot hold.
        case badResult
        /// A status this runtime does not know.
        case other(UInt64)

        /// The hypercall's status (5 for `badResult`).
        var status: UInt64 {
            switch self {
            case .noSuchFunction: 1
            case .badArguments: 2
            case .resultDoesNotFit: 3
            case .failed: 4
            case .badResult: 5
            case .other(let status): status
            }
        }
    }

    enum Host {
        /// Where results go unless the caller gives a buffer: 0x3C00-0x3FFF of the guest-runtime scratch page.
        static var resultBuffer: UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: 0x3C00), count: 0x400)
        }

        /// Calls the host function `name` with `arguments` (at most 8) and returns its result, decoded from
        /// `buffer` (kind u32, reserved u32, the integer or byte count u64, then the bytes).
        @inline(__always)
        static func call(
            _ name: StaticString, _ arguments: HostArgument...,
            result buffer: UnsafeMutableRawBufferPointer = resultBuffer
        ) throws(HostCallError) -> HostValue {
            try arguments.withUnsafeBufferPointer { (descriptors) throws(HostCallError) in
                try call(name, descriptors, result: buffer)
            }
        }

        /// ``call(_:_:result:)`` with the argument descriptors already in memory.
        static func call(
            _ name: StaticString, _ descriptors: UnsafeBufferPointer<HostArgument>,
            result buffer: UnsafeMutableRawBufferPointer
        ) throws(HostCallError) -> HostValue {
            let status = Hypercall.call(
                .callHost, count: 6, Calls.address(name.utf8Start), UInt64(truncatingIfNeeded: name.utf8CodeUnitCount),
                Calls.address(descriptors.baseAddress), UInt64(truncatingIfNeeded: descriptors.count),
                Calls.address(buffer.baseAddress), UInt64(truncatingIfNeeded: buffer.count))
            switch status {
            case 0: break
            case 1: throw .noSuchFunction
            case 2: throw .badArguments
            case 3: throw .resultDoesNotFit
            case 4: throw .failed
            default: throw .other(status)
            }
            guard buffer.count >= 16 else { throw .badResult }
            let kind = buffer.load(fromByteOffset: 0, as: UInt32.self)
            let word = buffer.load(fromByteOffset: 8, as: UInt64.self)
            switch CallKind(rawValue: kind) {
            case .nothing: return .nothing
            case .int: return .int(Int64(bitPattern: word))
            case .bytes, .string:
                guard word <= UInt64(truncatingIfNeeded: buffer.count - 16) else { throw .badResult }
                let bytes = UnsafeRawBufferPointer(
                    start: buffer.baseAddress.unsafelyUnwrapped + 16, count: Int(truncatingIfNeeded: word))
                return kind == CallKind.bytes.rawValue ? .bytes(bytes) : .string(bytes)
            case nil: throw .badResult
            }
        }
    }

    // MARK: Composing bytes without the heap

    /// Bytes appended into a fixed buffer (a message composed in the call area's free space, say). What does
    /// not fit is dropped, and `truncated` says so.
    struct ByteWriter {
        let buffer: UnsafeMutableRawBufferPointer
        private(set) var count = 0
        private(set) var truncated = false

        init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

        /// What was written so far.
        var written: UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: buffer.baseAddress, count: count)
        }

        mutating func append(_ byte: UInt8) {
            guard count < buffer.count else {
                truncated = true
                return
            }
            buffer[count] = byte
            count &+= 1
        }

        /// `bytes`, or as many as fit.
        mutating func append(_ bytes: UnsafeRawBufferPointer) {
            var length = bytes.count
            let room = buffer.count &- count
            if length > room {
                length = room
                truncated = true
            }
            guard length > 0, let source = bytes.baseAddress, let target = buffer.baseAddress else { return }
            (target + count).copyMemory(from: source, byteCount: length)
            count &+= length
        }

        /// A string literal's UTF-8 bytes.
        mutating func append(_ text: StaticString) {
            text.withUTF8Buffer { append(UnsafeRawBufferPointer($0)) }
        }
    }

#endif
