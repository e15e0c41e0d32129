import GDBRemote
import Glibc
import Testing

/// SplitMix64: a tiny, fast, reproducible generator; one seed fixes a whole stream.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Hostile packet streams from a seed: valid packets, packets with random fields, and mutations of both.
struct PacketStreamGenerator {
    var random: SplitMix64

    /// Packets gdb sends, plus ones it never would.
    static let corpus: [String] = [
        "qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386", "QStartNoAckMode", "?", "g", "p10", "p0",
        "P10=0510000000000000", "m1000,4", "m2ff0,40", "M2000,2:abcd", "X2000,2:}\u{03}}]", "Z0,1005,1", "z0,1005,1",
        "Z1,1006,1", "Z2,2000,1", "Z4,2000,8", "c", "s", "vCont;c", "vCont;s:1;c", "vCont?",
        "qXfer:features:read:target.xml:0,ffb",
        "qXfer:features:read:microvm-amd64-core.xml:0,100", "qAttached", "qC", "qfThreadInfo", "qsThreadInfo", "Hg0",
        "Hc-1", "T1", "qOffsets", "vMustReplyEmpty", "D", "k",
        // Hostile ones.
        "mffffffffffffffff,ffffffff", "m0,ffffffffffffffff", "Mffffffffffffffff,ffffffffffffffff:00",
        "Xfffffffffffffffe,2:}}}", "Z0,ffffffffffffffff,ffffffffffffffff", "Z2,1,ffffffffffffffff",
        "p ffffffffffffffff",
        "Pffffffff=00", "G0", "qXfer:features:read:target.xml:ffffffffffffffff,ffffffffffffffff",
        "qXfer:features:read:../../etc/passwd:0,10", "vCont;x", "vCont;c:", "Hgp.", "c ffffffffffffffff",
        "S05;ffffffffffffffff", "m-1,1", "M1000,1:", "X1000,1:}", "Z9,0,0",
        "qSupported:" + String(repeating: "a;", count: 200),
    ]

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
    mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }

    mutating func interestingNumber() -> UInt64 {
        switch int(0...7) {
        case 0: 0
        case 1: UInt64.max
        case 2: UInt64.max - UInt64(int(0...16))
        case 3: UInt64(int(0x1000...0x3000))
        case 4: UInt64(int(0...0x10000))
        case 5: 0xFFFF_FFFF
        case 6: UInt64(1) << UInt64(int(0...63))
        default: random.next()
        }
    }

    /// A packet with random fields for a random command.
    mutating func randomCommand() -> String {
        let a = hex(interestingNumber())
        let b = hex(interestingNumber())
        switch int(0...11) {
        case 0: return "m\(a),\(b)"
        case 1:
            let count = int(0...40)
            return "M\(a),\(hex(UInt64(count))):" + String(repeating: "5a", count: count)
        case 2:
            let data = (0..<int(0...40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            return "X\(a),\(hex(UInt64(data.count))):" + String(decoding: GDBPacket.escaped(data), as: UTF8.self)
        case 3: return "Z\(int(0...5)),\(a),\(b)"
        case 4: return "z\(int(0...5)),\(a),\(b)"
        case 5: return "p\(hex(UInt64(int(0...80))))"
        case 6: return "P\(hex(UInt64(int(0...80))))=" + String(repeating: "00", count: int(0...20))
        case 7: return ["c", "s", "vCont;c", "vCont;s", "c\(a)", "s\(a)", "C05", "S0b;\(a)"][int(0...7)]
        case 8: return "qXfer:features:read:target.xml:\(a),\(b)"
        case 9: return "G" + String(repeating: "0", count: int(0...1300))
        case 10: return ["H", "T", "Hg", "Hc"][int(0...3)] + ["-1", "0", "1", "2", a, "p1.1", "zz"][int(0...6)]
        default: return Self.corpus[int(0...Self.corpus.count - 1)]
        }
    }

    /// One framed packet, sometimes run-length encoded, sometimes with a wrong checksum.
    mutating func framedPacket() -> [UInt8] {
        var payload = Array((chance(50) ? Self.corpus[int(0...Self.corpus.count - 1)] : randomCommand()).utf8)
        if chance(1) { payload += Array(repeating: UInt8(ascii: "0"), count: int(4090...6000)) }  // past PacketSize
        if chance(10) { payload = runLengthEncoded(payload) }
        var framed = GDBPacket.framed(payload)
        if chance(5) { framed[framed.count - 1] ^= 0x01 }
        return framed
    }

    /// A crude run-length encoder (runs of 4 to 97 copies), to feed the decoder what gdb could send.
    func runLengthEncoded(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            var run = 1
            while index + run < bytes.count, bytes[index + run] == bytes[index], run < 98 { run += 1 }
            let repeatable =
                bytes[index] != UInt8(ascii: "}") && bytes[index] != UInt8(ascii: "*")
                && bytes[index] != UInt8(ascii: "#") && bytes[index] != UInt8(ascii: "$")
            let count = UInt8(run - 1 + 29)
            if repeatable, run >= 4, count != UInt8(ascii: "#"), count != UInt8(ascii: "$") {
                out += [bytes[index], UInt8(ascii: "*"), count]
                index += run
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return out
    }

    /// Applies one random mutation to a stream.
    mutating func mutate(_ stream: inout [UInt8]) {
        guard !stream.isEmpty else { return }
        let at = int(0...stream.count - 1)
        switch int(0...8) {
        case 0: stream[at] ^= UInt8(1 << int(0...7))  // bit flip
        case 1: stream.removeSubrange(at...)  // truncation
        case 2: stream.insert(UInt8(truncatingIfNeeded: random.next()), at: at)
        case 3: stream.insert([0x24, 0x23, 0x7D, 0x2A, 0x03, 0x2B, 0x2D][int(0...6)], at: at)  // $ # } * ^C + -
        case 4: stream.remove(at: at)
        case 5:  // nested escapes
            stream.insert(contentsOf: Array(repeating: UInt8(ascii: "}"), count: int(1...64)), at: at)
        case 6: stream.insert(contentsOf: Array("ffffffffffffffffffffffff".utf8), at: at)  // huge numbers
        case 7: stream.insert(contentsOf: Array(repeating: UInt8(ascii: "*"), count: int(1...8)), at: at)
        default:
            let end = min(stream.count, at + int(1...32))
            stream.insert(contentsOf: Array(stream[at..<end]), at: int(0...stream.count - 1))  // splice
        }
    }

    /// A whole stream: packets, acks, interrupt bytes, garbage; then mutations.
    mutating func stream() -> [UInt8] {
        var stream: [UInt8] = []
        for _ in 0..<int(1...24) {
            switch int(0...19) {
            case 0: stream.append([UInt8(ascii: "+"), UInt8(ascii: "-"), 0x03][int(0...2)])
            case 1: stream += (0..<int(1...16)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            default: stream += framedPacket()
            }
        }
        for _ in 0..<int(0...4) { mutate(&stream) }
        return stream
    }

    /// Splits a stream into the chunks reads would return.
    mutating func chunks(_ stream: [UInt8]) -> [[UInt8]] {
        var chunks: [[UInt8]] = []
        var index = 0
        while index < stream.count {
            let size = chance(50) ? stream.count - index : int(1...max(1, min(512, stream.count - index)))
            chunks.append(Array(stream[index..<index + size]))
            index += size
        }
        return chunks
    }
}

@Suite("Fuzzing the session with seeded hostile packet streams")
struct FuzzTests {
    /// `GDB_FUZZ_SEED` and `GDB_FUZZ_COUNT` override the defaults for a longer run by hand.
    static let baseSeed: UInt64 =
        getenv("GDB_FUZZ_SEED").flatMap { UInt64(String(cString: $0)) } ?? 0x6D69_6372_6F76_6D00
    static let streamCount: Int = getenv("GDB_FUZZ_COUNT").flatMap { Int(String(cString: $0)) } ?? 2000

    @Test("no crash, no hang, bounded replies, every packet answered or deliberately not")
    func streams() {
        let clock = ContinuousClock()
        let start = clock.now
        var packets = 0
        var bytes = 0
        var ends: [String: Int] = [:]
        for index in 0..<Self.streamCount {
            let seed = Self.baseSeed &+ UInt64(index)
            var generator = PacketStreamGenerator(random: SplitMix64(seed: seed))
            let stream = generator.stream()
            let transport = ScriptedTransport(chunks: generator.chunks(stream))
            transport.bytesWhileRunning = (0..<4).map { _ in generator.chance(20) ? [0x03] : [] }
            let target = FakeTarget.standard(generator.chance(20) ? .i386 : .amd64)
            target.instructionBudget = 64
            let session = GDBSession(target: target)
            let end = session.serve(over: transport)
            let stats = session.statistics
            packets += stats.packets
            bytes += stream.count
            ends[String(describing: end).split(separator: " ").prefix(3).joined(separator: " "), default: 0] += 1

            let sent = Sent.parse(transport.output)
            let reproduce = "seed \(seed) (GDB_FUZZ_SEED=\(seed) GDB_FUZZ_COUNT=1)"
            guard !sent.contains(where: { if case .corrupt = $0 { true } else { false } }) else {
                Issue.record("a malformed frame was sent, \(reproduce)")
                return
            }
            #expect(stats.largestReply <= session.maximumPacketSize, "\(reproduce)")
            #expect(stats.replies + stats.unansweredPackets == stats.packets, "\(reproduce): \(stats)")
            #expect(stats.unansweredPackets <= 1, "only k goes unanswered, and it ends the session: \(reproduce)")
            let frames = sent.count { if case .packet = $0 { true } else { false } }
            #expect(frames == stats.replies + stats.retransmissions, "\(reproduce)")
        }
        let elapsed = clock.now - start
        print(
            "gdb fuzz: \(Self.streamCount) streams from seed \(Self.baseSeed), \(bytes) bytes, \(packets) packets in \(elapsed); ends: \(ends.sorted { $0.key < $1.key })"
        )
        #expect(elapsed < .seconds(30))
    }

    @Test("decoder round trip: any bytes, escaped and framed, come out unchanged")
    func escapeRoundTrip() {
        var random = SplitMix64(seed: Self.baseSeed)
        for _ in 0..<2000 {
            let data = (0..<Int.random(in: 0...300, using: &random)).map { _ in UInt8(truncatingIfNeeded: random.next())
            }
            let payload = Array("X0,\(hex(data.count)):".utf8) + GDBPacket.escaped(data)
            var decoder = GDBPacketDecoder(maximumPayloadSize: 4096)
            var events: [GDBPacketDecoder.Event] = []
            decoder.feed(GDBPacket.framed(payload), into: &events)
            #expect(events == [.packet(payload)])
            #expect(GDBCommand(parsing: payload) == .writeMemory(address: 0, bytes: data))
        }
    }

    @Test("run-length round trip: encoded payloads expand to the original")
    func runLengthRoundTrip() throws {
        var generator = PacketStreamGenerator(random: SplitMix64(seed: Self.baseSeed ^ 0xFF))
        for _ in 0..<2000 {
            let alphabet = Array("0123456789abcdef,:;".utf8)
            var payload: [UInt8] = []
            while payload.count < generator.int(0...400) {
                payload += Array(
                    repeating: alphabet[generator.int(0...alphabet.count - 1)], count: generator.int(1...120))
            }
            let encoded = generator.runLengthEncoded(payload)
            #expect(try GDBPacket.expandingRunLengths(encoded, limit: 100_000) == payload)
        }
    }
}
