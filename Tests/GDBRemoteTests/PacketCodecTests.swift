import GDBRemote
import Testing

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite("Packet bytes: framing, checksums, escapes, run lengths, hex")
struct PacketCodecTests {
    @Test("a packet is $payload#checksum, the checksum the byte sum modulo 256 in lowercase hex")
    func framing() {
        #expect(GDBPacket.framed(bytes("OK")) == bytes("$OK#9a"))
        #expect(GDBPacket.framed(bytes("g")) == bytes("$g#67"))
        #expect(GDBPacket.framed(bytes("")) == bytes("$#00"))
        #expect(GDBPacket.framed(bytes("T05thread:1;")) == bytes("$T05thread:1;#d7"))
        #expect(GDBPacket.checksum(bytes("qSupported")) == 0x37)
        #expect(GDBPacket.checksum([0xFF, 0xFF, 0x03]) == 0x01)  // wraps modulo 256
    }

    @Test("binary data escapes $ # } * as } and the byte XOR 0x20, and nothing else")
    func escapes() {
        #expect(
            GDBPacket.escaped([0x24, 0x23, 0x7D, 0x2A, 0x41, 0x03]) == [
                0x7D, 0x04, 0x7D, 0x03, 0x7D, 0x5D, 0x7D, 0x0A, 0x41, 0x03,
            ])
        #expect(
            GDBPacket.unescaped([0x7D, 0x04, 0x7D, 0x03, 0x7D, 0x5D, 0x7D, 0x0A, 0x41]) == [
                0x24, 0x23, 0x7D, 0x2A, 0x41,
            ])
        #expect(GDBPacket.unescaped([0x41, 0x7D]) == nil)  // a lone escape at the end
        #expect(GDBPacket.unescaped([0x7D, 0x7D]) == [0x5D])  // an escaped escape byte is just data
        let all = (0...255).map { UInt8($0) }
        #expect(GDBPacket.unescaped(GDBPacket.escaped(all)) == all)
    }

    @Test("run lengths: X*n repeats X n-29 more times")
    func runLengths() throws {
        #expect(try GDBPacket.expandingRunLengths(bytes("0* "), limit: 100) == bytes("0000"))
        #expect(try GDBPacket.expandingRunLengths(bytes("ab*!c"), limit: 100) == bytes("abbbbbc"))
        #expect(
            try GDBPacket.expandingRunLengths(bytes("x*~"), limit: 100)
                == Array(repeating: UInt8(ascii: "x"), count: 98))
        // A run can follow a run.
        #expect(try GDBPacket.expandingRunLengths(bytes("z* * "), limit: 100) == bytes("zzzzzzz"))
        // An escape pair is copied verbatim, even when its second byte is '*'.
        #expect(try GDBPacket.expandingRunLengths([0x7D, 0x2A, 0x41], limit: 100) == [0x7D, 0x2A, 0x41])
    }

    @Test("malformed or oversized run lengths are refused")
    func badRunLengths() {
        #expect(throws: GDBPacket.RunLengthError.malformed) {
            try GDBPacket.expandingRunLengths(bytes("* "), limit: 100)
        }
        #expect(throws: GDBPacket.RunLengthError.malformed) {
            try GDBPacket.expandingRunLengths(bytes("a*"), limit: 100)
        }
        #expect(throws: GDBPacket.RunLengthError.malformed) {
            try GDBPacket.expandingRunLengths([0x61, 0x2A, 0x1F], limit: 100)
        }
        #expect(throws: GDBPacket.RunLengthError.malformed) {
            try GDBPacket.expandingRunLengths([0x61, 0x2A, 0x7F], limit: 100)
        }
        #expect(throws: GDBPacket.RunLengthError.malformed) {
            try GDBPacket.expandingRunLengths([0x7D, 0x41, 0x2A, 0x20], limit: 100)
        }
        #expect(throws: GDBPacket.RunLengthError.tooLong) { try GDBPacket.expandingRunLengths(bytes("x*~"), limit: 97) }
        #expect(throws: GDBPacket.RunLengthError.tooLong) {
            try GDBPacket.expandingRunLengths(bytes("12345"), limit: 4)
        }
    }

    @Test("hex numbers: either case, leading zeros, no overflow past 64 bits")
    func hexNumbers() {
        #expect(GDBPacket.hexNumber(bytes("ffffffffffffffff")) == UInt64.max)
        #expect(GDBPacket.hexNumber(bytes("DeadBeef")) == 0xDEAD_BEEF)
        #expect(GDBPacket.hexNumber(bytes("00000000000000000001")) == 1)
        #expect(GDBPacket.hexNumber(bytes("10000000000000000")) == nil)
        #expect(GDBPacket.hexNumber(bytes("")) == nil)
        #expect(GDBPacket.hexNumber(bytes("12g")) == nil)
        #expect(GDBPacket.hexNumber(bytes("-1")) == nil)
        #expect(GDBPacket.hexString(0x1000) == "1000")
        #expect(GDBPacket.hexEncoded([0x00, 0xAB, 0x7F]) == bytes("00ab7f"))
        #expect(GDBPacket.hexDecoded(bytes("00AB7f")) == [0x00, 0xAB, 0x7F])
        #expect(GDBPacket.hexDecoded(bytes("abc")) == nil)
        #expect(GDBPacket.hexDecoded(bytes("zz")) == nil)
    }
}

@Suite("The decoder turns a byte stream into events")
struct PacketDecoderTests {
    private func events(_ stream: [UInt8], maximum: Int = 64) -> ([GDBPacketDecoder.Event], GDBPacketDecoder) {
        var decoder = GDBPacketDecoder(maximumPayloadSize: maximum)
        var events: [GDBPacketDecoder.Event] = []
        decoder.feed(stream, into: &events)
        return (events, decoder)
    }

    @Test("acks, nacks, the interrupt byte and packets, in order")
    func basicEvents() {
        let (events, decoder) = events(bytes("+-") + [0x03] + bytes("$g#67$m1000,4#8e"))
        #expect(events == [.ack, .nack, .interrupt, .packet(bytes("g")), .packet(bytes("m1000,4"))])
        #expect(decoder.isIdle)
    }

    @Test("garbage between packets is skipped and counted")
    func garbage() {
        let (events, decoder) = events(bytes("xyz\r\n$?#3f!"))
        #expect(events == [.packet(bytes("?"))])
        #expect(decoder.skippedByteCount == 6)
    }

    @Test("a wrong or non-hex checksum is a bad-checksum event; checksum digits in either case")
    func checksums() {
        #expect(events(bytes("$g#00")).0 == [.badChecksum])
        #expect(events(bytes("$g#6z")).0 == [.badChecksum])
        #expect(events(bytes("$OK#9A")).0 == [.packet(bytes("OK"))])
    }

    @Test("a $ inside a packet abandons it; a $ in place of a checksum digit starts the next")
    func restarts() {
        #expect(events(bytes("$m10$g#67")).0 == [.packet(bytes("g"))])
        #expect(events(bytes("$g#6$g#67")).0 == [.badChecksum, .packet(bytes("g"))])
    }

    @Test("0x03 inside a packet is data (an escaped #), not an interrupt")
    func interruptByteInsidePacket() {
        let payload: [UInt8] = bytes("X0,1:") + [0x7D, 0x03]
        let framed = GDBPacket.framed(payload)
        #expect(events(framed).0 == [.packet(payload)])
    }

    @Test("a payload longer than the maximum is dropped, not buffered, and refused once its checksum matches")
    func oversized() {
        #expect(events(bytes("$123456789#dd"), maximum: 8).0 == [.tooLong])
        #expect(events(bytes("$123456789#00"), maximum: 8).0 == [.badChecksum])
        #expect(events(bytes("$12345678#a4"), maximum: 8).0 == [.packet(bytes("12345678"))])
        // A run-length expansion past the maximum is refused the same way; a malformed one separately.
        #expect(events(GDBPacket.framed(bytes("x*~")), maximum: 8).0 == [.tooLong])
        #expect(events(GDBPacket.framed(bytes("*~")), maximum: 8).0 == [.badRunLength])
    }

    @Test("packets arrive expanded")
    func expanded() {
        #expect(events(GDBPacket.framed(bytes("m0,1* "))).0 == [.packet(bytes("m0,1111"))])
    }
}
