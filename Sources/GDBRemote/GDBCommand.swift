/// A thread as a packet names it: the stub has one thread, number 1.
public enum GDBThreadID: Hashable, Sendable {
    /// `-1`: every thread.
    case all
    /// `0`: any thread.
    case any
    /// A specific thread number (from `N` or the multiprocess form `pP.N`).
    case number(UInt64)

    /// Whether the stub's only thread (number 1) is meant.
    public var includesTheThread: Bool {
        switch self {
        case .all, .any: true
        case .number(let n): n == 1
        }
    }

    /// Parses `-1`, `0`, a hex number, or the multiprocess form `pPID.TID`; `nil` otherwise.
    public init?(parsing bytes: some Collection<UInt8>) {
        var digits = Array(bytes)
        if digits.first == UInt8(ascii: "p") {
            guard let dot = digits.firstIndex(of: UInt8(ascii: ".")) else { return nil }
            guard dot > 1, GDBPacket.hexNumber(digits[1..<dot]) != nil || digits[1..<dot].elementsEqual("-1".utf8)
            else { return nil }
            digits = Array(digits[(dot + 1)...])
        }
        if digits.elementsEqual("-1".utf8) {
            self = .all
        } else if let number = GDBPacket.hexNumber(digits) {
            self = number == 0 ? .any : .number(number)
        } else {
            return nil
        }
    }
}

/// A packet from gdb, parsed. Each case names its packet; payloads are decoded (hex to bytes, escapes
/// removed) but not checked against a target.
public enum GDBCommand: Hashable, Sendable {
    /// `qSupported[:feature;...]`: gdb's features; the reply lists ours.
    case querySupported([String])
    /// `QStartNoAckMode`: stop sending and expecting `+` / `-` after the `OK`.
    case startNoAckMode
    /// `qXfer:features:read:ANNEX:OFFSET,LENGTH`: a chunk of a target-description document.
    case readFeatures(annex: String, offset: UInt64, length: UInt64)
    /// `?`: why the target is stopped.
    case haltReason
    /// `g`: every register.
    case readRegisters
    /// `G XX...`: write every register (the hex decoded).
    case writeRegisters([UInt8])
    /// `p N`: one register by number.
    case readRegister(UInt64)
    /// `P N=XX...`: write one register.
    case writeRegister(UInt64, [UInt8])
    /// `m ADDR,LENGTH`: read memory.
    case readMemory(address: UInt64, length: UInt64)
    /// `M ADDR,LENGTH:XX...` (hex) or `X ADDR,LENGTH:DATA` (binary, escaped): write memory.
    case writeMemory(address: UInt64, bytes: [UInt8])
    /// `c [ADDR]`, `s [ADDR]`, `C SIG[;ADDR]`, `S SIG[;ADDR]`, or the action `vCont;...` picks for thread 1.
    /// A signal to deliver is ignored: a guest has no signals.
    case resume(GDBResumeMode, address: UInt64?)
    /// `vCont?`: which `vCont` actions are supported.
    case queryResumeActions
    /// `Z TYPE,ADDR,KIND`: insert a breakpoint or watchpoint.
    case insertBreakpoint(GDBBreakpointKind, address: UInt64, length: UInt64)
    /// `z TYPE,ADDR,KIND`: remove one.
    case removeBreakpoint(GDBBreakpointKind, address: UInt64, length: UInt64)
    /// `k`: kill the target.
    case kill
    /// `D` or `D;PID`: detach and let the target run.
    case detach
    /// `qAttached[:PID]`: whether the stub attached to an existing process (`1`) or created it (`0`).
    case queryAttached
    /// `qC`: the current thread.
    case queryCurrentThread
    /// `qfThreadInfo`: the first batch of thread ids.
    case firstThreadInfo
    /// `qsThreadInfo`: the next batch.
    case nextThreadInfo
    /// `H OP THREAD`: select the thread for later operations (`g`, `c`).
    case setThread(operation: UInt8, thread: GDBThreadID)
    /// `T THREAD`: is this thread alive?
    case threadAlive(GDBThreadID)
    /// A packet the stub recognises whose arguments are malformed: answered `E16`.
    case malformed(String)
    /// Any other packet: answered with an empty reply, which means "unsupported".
    case unsupported

    /// Parses a packet's payload (after framing and run-length expansion).
    public init(parsing payload: [UInt8]) {
        self = Self.parse(payload[...])
    }

    private static func parse(_ p: ArraySlice<UInt8>) -> GDBCommand {
        guard let first = p.first else { return .unsupported }
        let rest = p.dropFirst()
        switch first {
        case UInt8(ascii: "?"): return rest.isEmpty ? .haltReason : .unsupported
        case UInt8(ascii: "g"): return rest.isEmpty ? .readRegisters : .unsupported
        case UInt8(ascii: "G"):
            guard let bytes = GDBPacket.hexDecoded(rest) else { return .malformed("G: register data is not hex") }
            return .writeRegisters(bytes)
        case UInt8(ascii: "p"):
            guard let number = GDBPacket.hexNumber(rest) else { return .malformed("p: bad register number") }
            return .readRegister(number)
        case UInt8(ascii: "P"):
            guard let equals = rest.firstIndex(of: UInt8(ascii: "=")),
                let number = GDBPacket.hexNumber(rest[..<equals]),
                let bytes = GDBPacket.hexDecoded(rest[(equals + 1)...])
            else { return .malformed("P: expected N=VALUE in hex") }
            return .writeRegister(number, bytes)
        case UInt8(ascii: "m"):
            guard let (address, length) = addressAndLength(rest) else { return .malformed("m: expected ADDR,LENGTH") }
            return .readMemory(address: address, length: length)
        case UInt8(ascii: "M"), UInt8(ascii: "X"):
            return parseWrite(rest, binary: first == UInt8(ascii: "X"))
        case UInt8(ascii: "c"), UInt8(ascii: "s"):
            let mode: GDBResumeMode = first == UInt8(ascii: "c") ? .continue : .step
            if rest.isEmpty { return .resume(mode, address: nil) }
            guard let address = GDBPacket.hexNumber(rest) else { return .malformed("c/s: bad address") }
            return .resume(mode, address: address)
        case UInt8(ascii: "C"), UInt8(ascii: "S"):
            let mode: GDBResumeMode = first == UInt8(ascii: "C") ? .continue : .step
            let parts = rest.split(separator: UInt8(ascii: ";"), maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count >= 1, let signal = GDBPacket.hexNumber(parts[0]), signal <= 0xFF else {
                return .malformed("C/S: bad signal")
            }
            if parts.count == 1 { return .resume(mode, address: nil) }
            guard let address = GDBPacket.hexNumber(parts[1]) else { return .malformed("C/S: bad address") }
            return .resume(mode, address: address)
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            return parseBreakpoint(rest, insert: first == UInt8(ascii: "Z"))
        case UInt8(ascii: "k"): return rest.isEmpty ? .kill : .unsupported
        case UInt8(ascii: "D"):
            if rest.isEmpty || rest.first == UInt8(ascii: ";") { return .detach }
            return .unsupported
        case UInt8(ascii: "H"):
            guard let operation = rest.first, let thread = GDBThreadID(parsing: rest.dropFirst()) else {
                return .malformed("H: expected OP THREAD")
            }
            return .setThread(operation: operation, thread: thread)
        case UInt8(ascii: "T"):
            guard let thread = GDBThreadID(parsing: rest) else { return .malformed("T: bad thread id") }
            return .threadAlive(thread)
        case UInt8(ascii: "q"), UInt8(ascii: "Q"), UInt8(ascii: "v"):
            return parseNamed(p)
        default:
            return .unsupported
        }
    }

    /// The `q`, `Q` and `v` packets, named by a word.
    private static func parseNamed(_ p: ArraySlice<UInt8>) -> GDBCommand {
        if p.elementsEqual("qSupported".utf8) { return .querySupported([]) }
        if p.starts(with: "qSupported:".utf8) {
            let list = p.dropFirst("qSupported:".utf8.count)
            return .querySupported(list.split(separator: UInt8(ascii: ";")).map { String(decoding: $0, as: UTF8.self) })
        }
        if p.elementsEqual("QStartNoAckMode".utf8) { return .startNoAckMode }
        if p.elementsEqual("qAttached".utf8) || p.starts(with: "qAttached:".utf8) { return .queryAttached }
        if p.elementsEqual("qC".utf8) { return .queryCurrentThread }
        if p.elementsEqual("qfThreadInfo".utf8) { return .firstThreadInfo }
        if p.elementsEqual("qsThreadInfo".utf8) { return .nextThreadInfo }
        if p.elementsEqual("vCont?".utf8) { return .queryResumeActions }
        if p.starts(with: "vCont;".utf8) { return parseResumeActions(p.dropFirst("vCont;".utf8.count)) }
        let features = "qXfer:features:read:".utf8
        if p.starts(with: features) {
            let rest = p.dropFirst(features.count)
            guard let colon = rest.lastIndex(of: UInt8(ascii: ":")),
                let (offset, length) = addressAndLength(rest[(colon + 1)...])
            else { return .malformed("qXfer: expected ANNEX:OFFSET,LENGTH") }
            return .readFeatures(annex: String(decoding: rest[..<colon], as: UTF8.self), offset: offset, length: length)
        }
        return .unsupported
    }

    /// `vCont;ACTION[:THREAD];...`: the first action naming thread 1, else the first without a thread.
    private static func parseResumeActions(_ list: ArraySlice<UInt8>) -> GDBCommand {
        var chosen: GDBResumeMode?
        var fallback: GDBResumeMode?
        for action in list.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false) {
            let parts = action.split(separator: UInt8(ascii: ":"), maxSplits: 1, omittingEmptySubsequences: false)
            let verb = parts[0]
            let mode: GDBResumeMode
            switch verb.first {
            case UInt8(ascii: "c") where verb.count == 1: mode = .continue
            case UInt8(ascii: "s") where verb.count == 1: mode = .step
            case UInt8(ascii: "C"), UInt8(ascii: "S"):
                guard let signal = GDBPacket.hexNumber(verb.dropFirst()), signal <= 0xFF else {
                    return .malformed("vCont: bad signal")
                }
                mode = verb.first == UInt8(ascii: "C") ? .continue : .step
            default:
                return .malformed("vCont: unsupported action")
            }
            if parts.count == 2 {
                guard let thread = GDBThreadID(parsing: parts[1]) else { return .malformed("vCont: bad thread id") }
                if chosen == nil && thread.includesTheThread { chosen = mode }
            } else if fallback == nil {
                fallback = mode
            }
        }
        guard let mode = chosen ?? fallback else { return .malformed("vCont: no action for thread 1") }
        return .resume(mode, address: nil)
    }

    private static func parseWrite(_ rest: ArraySlice<UInt8>, binary: Bool) -> GDBCommand {
        let name = binary ? "X" : "M"
        guard let colon = rest.firstIndex(of: UInt8(ascii: ":")),
            let (address, length) = addressAndLength(rest[..<colon])
        else { return .malformed("\(name): expected ADDR,LENGTH:DATA") }
        let data = rest[(colon + 1)...]
        guard let bytes = binary ? GDBPacket.unescaped(data) : GDBPacket.hexDecoded(data) else {
            return .malformed("\(name): bad data")
        }
        guard UInt64(bytes.count) == length else { return .malformed("\(name): data length differs from LENGTH") }
        return .writeMemory(address: address, bytes: bytes)
    }

    private static func parseBreakpoint(_ rest: ArraySlice<UInt8>, insert: Bool) -> GDBCommand {
        // Conditions and commands (`;X...`) are only sent when advertised, which this stub does not do.
        let head = rest.split(separator: UInt8(ascii: ";"), maxSplits: 1, omittingEmptySubsequences: false)[0]
        let fields = head.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard fields.count == 3, fields[0].count == 1, let type = GDBPacket.hexValue(fields[0].first!) else {
            return .malformed("Z/z: expected TYPE,ADDR,KIND")
        }
        guard let kind = GDBBreakpointKind(rawValue: Int(type)) else { return .unsupported }
        guard let address = GDBPacket.hexNumber(fields[1]), let length = GDBPacket.hexNumber(fields[2]) else {
            return .malformed("Z/z: bad address or kind")
        }
        return insert
            ? .insertBreakpoint(kind, address: address, length: length)
            : .removeBreakpoint(kind, address: address, length: length)
    }

    /// `ADDR,LENGTH`, both hex.
    private static func addressAndLength(_ bytes: ArraySlice<UInt8>) -> (UInt64, UInt64)? {
        guard let comma = bytes.firstIndex(of: UInt8(ascii: ",")),
            let address = GDBPacket.hexNumber(bytes[..<comma]),
            let length = GDBPacket.hexNumber(bytes[(comma + 1)...])
        else { return nil }
        return (address, length)
    }
}
