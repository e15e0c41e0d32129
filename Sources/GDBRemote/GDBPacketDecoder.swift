/// Splits the byte stream from gdb into events: packets (checksum verified, run lengths expanded), acks,
/// interrupt requests, and packets that must be refused.
///
/// Memory is bounded: a packet's payload is buffered up to `maximumPayloadSize` bytes; past that, its
/// bytes are only summed, and the packet ends as ``Event/tooLong``. Bytes outside packets other than `+`,
/// `-` and `0x03` are garbage and skipped. A `$` inside a packet abandons it and starts a new one (what
/// a truncated packet followed by a retransmission looks like).
public struct GDBPacketDecoder: Sendable {
    /// One thing the stream said.
    public enum Event: Hashable, Sendable {
        /// A packet whose checksum matched, with run lengths expanded (escapes are left for the command
        /// that carries binary data).
        case packet([UInt8])
        /// A packet whose checksum did not match (or whose checksum digits are not hex): answer `-`.
        case badChecksum
        /// A packet with a valid checksum whose payload (or its run-length expansion) is longer than the
        /// maximum: its bytes were dropped.
        case tooLong
        /// A packet with a valid checksum and a malformed run-length encoding.
        case badRunLength
        /// `+`: gdb received our last reply.
        case ack
        /// `-`: gdb wants our last reply again.
        case nack
        /// `0x03`: gdb asks to interrupt the running target.
        case interrupt
    }

    private enum State: Sendable {
        case idle
        case payload
        case checksumHigh
        case checksumLow(UInt8)
    }

    /// The largest payload buffered, in bytes; what `qSupported` advertises as `PacketSize`.
    public let maximumPayloadSize: Int
    /// How many bytes outside packets were skipped as garbage.
    public private(set) var skippedByteCount = 0
    /// Whether the decoder is between packets (no partial packet buffered).
    public var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    private var state = State.idle
    private var payload: [UInt8] = []
    private var sum: UInt8 = 0
    private var overflowed = false

    /// A decoder that refuses payloads longer than `maximumPayloadSize` bytes.
    public init(maximumPayloadSize: Int) {
        precondition(maximumPayloadSize > 0, "a packet must be able to carry something")
        self.maximumPayloadSize = maximumPayloadSize
    }

    /// Consumes one byte; returns the event it completes, if any.
    public mutating func feed(_ byte: UInt8) -> Event? {
        switch state {
        case .idle:
            switch byte {
            case GDBPacket.start: beginPacket()
            case GDBPacket.ack: return .ack
            case GDBPacket.nack: return .nack
            case GDBPacket.interruptByte: return .interrupt
            default: skippedByteCount &+= 1
            }
            return nil
        case .payload:
            switch byte {
            case GDBPacket.end:
                state = .checksumHigh
            case GDBPacket.start:
                skippedByteCount &+= payload.count + 1
                beginPacket()
            default:
                sum &+= byte
                if payload.count < maximumPayloadSize {
                    payload.append(byte)
                } else {
                    overflowed = true
                }
            }
            return nil
        case .checksumHigh:
            guard let high = GDBPacket.hexValue(byte) else { return rejectChecksum(restartingWith: byte) }
            state = .checksumLow(high)
            return nil
        case .checksumLow(let high):
            guard let low = GDBPacket.hexValue(byte) else { return rejectChecksum(restartingWith: byte) }
            state = .idle
            defer { payload = [] }
            guard high << 4 | low == sum else { return .badChecksum }
            if overflowed { return .tooLong }
            do {
                return .packet(try GDBPacket.expandingRunLengths(payload, limit: maximumPayloadSize))
            } catch .tooLong {
                return .tooLong
            } catch {
                return .badRunLength
            }
        }
    }

    /// Consumes bytes, appending every completed event to `events`.
    public mutating func feed(_ bytes: some Sequence<UInt8>, into events: inout [Event]) {
        for byte in bytes {
            if let event = feed(byte) { events.append(event) }
        }
    }

    private mutating func beginPacket() {
        state = .payload
        payload = []
        payload.reserveCapacity(64)
        sum = 0
        overflowed = false
    }

    /// A non-hex checksum digit: the packet is refused; a `$` there starts the next packet.
    private mutating func rejectChecksum(restartingWith byte: UInt8) -> Event {
        payload = []
        if byte == GDBPacket.start {
            beginPacket()
        } else {
            state = .idle
        }
        return .badChecksum
    }
}
