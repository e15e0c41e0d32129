/// The byte-level rules of the remote serial protocol: framing, checksums, escapes, run lengths, hex.
///
/// A packet is `$` + payload + `#` + two lowercase hex digits of the payload's byte sum modulo 256. The
/// receiver answers `+` (received) or `-` (checksum wrong, send again) until no-ack mode
/// (`QStartNoAckMode`). A lone `0x03` byte outside a packet is an interrupt request.
public enum GDBPacket {
    /// The interrupt request gdb sends when the user presses Ctrl-C: ETX, outside any packet.
    public static let interruptByte: UInt8 = 0x03
    /// Acknowledges a packet whose checksum matched.
    public static let ack: UInt8 = UInt8(ascii: "+")
    /// Asks for a packet again: its checksum did not match.
    public static let nack: UInt8 = UInt8(ascii: "-")
    /// Starts a packet.
    public static let start: UInt8 = UInt8(ascii: "$")
    /// Ends a packet's payload; two checksum digits follow.
    public static let end: UInt8 = UInt8(ascii: "#")
    /// Escapes the next byte, which is XORed with ``escapeXOR``.
    public static let escape: UInt8 = UInt8(ascii: "}")
    /// Repeats the previous byte; the next byte minus 29 is the number of extra copies.
    public static let runLength: UInt8 = UInt8(ascii: "*")
    /// What an escaped byte is XORed with.
    public static let escapeXOR: UInt8 = 0x20

    /// The checksum of a payload: the sum of its bytes modulo 256.
    public static func checksum(_ payload: some Sequence<UInt8>) -> UInt8 {
        payload.reduce(0) { $0 &+ $1 }
    }

    /// Frames a payload as `$payload#cs`. The payload must already be escaped where it carries binary data
    /// (see ``escaped(_:)``).
    public static func framed(_ payload: [UInt8]) -> [UInt8] {
        let sum = checksum(payload)
        var bytes: [UInt8] = [start]
        bytes.reserveCapacity(payload.count + 4)
        bytes += payload
        bytes.append(end)
        bytes += hexDigits(of: sum)
        return bytes
    }

    /// Escapes binary data for a payload: each `$`, `#`, `}` and `*` becomes `}` followed by the byte XOR
    /// 0x20, so none of them appears raw.
    public static func escaped(_ data: some Sequence<UInt8>) -> [UInt8] {
        var bytes: [UInt8] = []
        for byte in data {
            if needsEscape(byte) {
                bytes.append(escape)
                bytes.append(byte ^ escapeXOR)
            } else {
                bytes.append(byte)
            }
        }
        return bytes
    }

    /// Whether a data byte must be escaped in a payload.
    public static func needsEscape(_ byte: UInt8) -> Bool {
        byte == start || byte == end || byte == escape || byte == runLength
    }

    /// Undoes ``escaped(_:)``; `nil` if the data ends with a lone `}`.
    public static func unescaped(_ data: some Sequence<UInt8>) -> [UInt8]? {
        var bytes: [UInt8] = []
        var pendingEscape = false
        for byte in data {
            if pendingEscape {
                bytes.append(byte ^ escapeXOR)
                pendingEscape = false
            } else if byte == escape {
                pendingEscape = true
            } else {
                bytes.append(byte)
            }
        }
        return pendingEscape ? nil : bytes
    }

    /// Why a run-length encoding could not be expanded.
    public enum RunLengthError: Error, Hashable, Sendable {
        /// A `*` with no repeatable byte before it (none, or an escape pair), without a count, or with a
        /// count outside the printable range.
        case malformed
        /// The expansion is longer than the limit.
        case tooLong
    }

    /// Expands run-length encoding: `X*n` stands for X followed by `n - 29` more copies of X, where `n` is a
    /// printable byte from space (3 copies) to `~` (97 copies).
    ///
    /// An escape pair (`}` and the byte after it) is copied as it is and cannot be repeated.
    ///
    /// - Throws: ``RunLengthError/malformed`` or, when the result would exceed `limit` bytes,
    ///   ``RunLengthError/tooLong``.
    public static func expandingRunLengths(_ payload: [UInt8], limit: Int) throws(RunLengthError) -> [UInt8] {
        guard payload.contains(runLength) else {
            guard payload.count <= limit else { throw .tooLong }
            return payload
        }
        var bytes: [UInt8] = []
        var index = 0
        var lastIsRepeatable = false
        while index < payload.count {
            let byte = payload[index]
            if byte == escape && index + 1 < payload.count {
                bytes.append(byte)
                bytes.append(payload[index + 1])
                index += 2
                lastIsRepeatable = false
            } else if byte == runLength {
                guard lastIsRepeatable, let previous = bytes.last, index + 1 < payload.count else { throw .malformed }
                let count = payload[index + 1]
                guard count >= 32, count <= 126 else { throw .malformed }
                let copies = Int(count) - 29
                guard copies <= limit - bytes.count else { throw .tooLong }
                bytes += repeatElement(previous, count: copies)
                index += 2
            } else {
                bytes.append(byte)
                index += 1
                lastIsRepeatable = true
            }
            if bytes.count > limit { throw .tooLong }
        }
        return bytes
    }

    // MARK: Hex

    /// The two lowercase hex digits of a byte.
    public static func hexDigits(of byte: UInt8) -> [UInt8] {
        [hexDigit(byte >> 4), hexDigit(byte & 0xF)]
    }

    /// Bytes as lowercase hex, two digits each (`m` and `g` replies).
    public static func hexEncoded(_ data: some Sequence<UInt8>) -> [UInt8] {
        var bytes: [UInt8] = []
        for byte in data {
            bytes.append(hexDigit(byte >> 4))
            bytes.append(hexDigit(byte & 0xF))
        }
        return bytes
    }

    /// Decodes hex digit pairs (either case); `nil` for an odd count or a non-hex byte.
    public static func hexDecoded(_ digits: some Collection<UInt8>) -> [UInt8]? {
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var high: UInt8?
        for digit in digits {
            guard let value = hexValue(digit) else { return nil }
            if let h = high {
                bytes.append(h << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return bytes
    }

    /// Parses a hex number (either case, leading zeros allowed); `nil` if empty, not hex, or above
    /// `UInt64.max`.
    public static func hexNumber(_ digits: some Collection<UInt8>) -> UInt64? {
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for digit in digits {
            guard let nibble = hexValue(digit), value >> 60 == 0 else { return nil }
            value = value << 4 | UInt64(nibble)
        }
        return value
    }

    /// A number in lowercase hex without leading zeros.
    public static func hexString(_ value: UInt64) -> String {
        String(value, radix: 16)
    }

    /// The value of one hex digit, either case.
    public static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}
