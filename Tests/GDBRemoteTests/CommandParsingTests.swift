import GDBRemote
import Testing

@Suite("Every command parses to its hand-written value")
struct CommandParsingTests {
    static let cases: [(String, GDBCommand)] = [
        ("qSupported", .querySupported([])),
        (
            "qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386",
            .querySupported(["multiprocess+", "swbreak+", "hwbreak+", "xmlRegisters=i386"])
        ),
        ("QStartNoAckMode", .startNoAckMode),
        ("qXfer:features:read:target.xml:0,ffb", .readFeatures(annex: "target.xml", offset: 0, length: 0xFFB)),
        ("qXfer:features:read:a:b.xml:10,20", .readFeatures(annex: "a:b.xml", offset: 0x10, length: 0x20)),
        ("qXfer:features:read:target.xml:0", .malformed("qXfer: expected ANNEX:OFFSET,LENGTH")),
        ("qXfer:auxv:read::0,100", .unsupported),
        ("?", .haltReason),
        ("g", .readRegisters),
        ("G0011ff", .writeRegisters([0x00, 0x11, 0xFF])),
        ("G001", .malformed("G: register data is not hex")),
        ("p10", .readRegister(0x10)),
        ("p", .malformed("p: bad register number")),
        ("P10=0102", .writeRegister(0x10, [0x01, 0x02])),
        ("P10", .malformed("P: expected N=VALUE in hex")),
        ("m1000,4", .readMemory(address: 0x1000, length: 4)),
        ("mffffffffffffffff,ffffffff", .readMemory(address: UInt64.max, length: 0xFFFF_FFFF)),
        ("m1000", .malformed("m: expected ADDR,LENGTH")),
        ("m1ffffffffffffffff,1", .malformed("m: expected ADDR,LENGTH")),
        ("M2000,2:abCD", .writeMemory(address: 0x2000, bytes: [0xAB, 0xCD])),
        ("M2000,3:abcd", .malformed("M: data length differs from LENGTH")),
        ("M2000,1:zz", .malformed("M: bad data")),
        ("X2000,0:", .writeMemory(address: 0x2000, bytes: [])),
        ("X2000,3:a}\u{04}:", .writeMemory(address: 0x2000, bytes: [0x61, 0x24, 0x3A])),
        ("X2000,1:}", .malformed("X: bad data")),
        ("c", .resume(.continue, address: nil)),
        ("c1000", .resume(.continue, address: 0x1000)),
        ("s", .resume(.step, address: nil)),
        ("C0b", .resume(.continue, address: nil)),
        ("S05;1004", .resume(.step, address: 0x1004)),
        ("C", .malformed("C/S: bad signal")),
        ("vCont?", .queryResumeActions),
        ("vCont;c", .resume(.continue, address: nil)),
        ("vCont;s:1;c", .resume(.step, address: nil)),
        ("vCont;c;s:1", .resume(.step, address: nil)),
        ("vCont;s:p1.1;c:p1.-1", .resume(.step, address: nil)),
        ("vCont;C05:2;S02", .resume(.step, address: nil)),
        ("vCont;t", .malformed("vCont: unsupported action")),
        ("vCont;s:2", .malformed("vCont: no action for thread 1")),
        ("Z0,1005,1", .insertBreakpoint(.software, address: 0x1005, length: 1)),
        ("z1,1005,1", .removeBreakpoint(.hardware, address: 0x1005, length: 1)),
        ("Z2,2000,4", .insertBreakpoint(.writeWatchpoint, address: 0x2000, length: 4)),
        ("Z3,2000,8", .insertBreakpoint(.readWatchpoint, address: 0x2000, length: 8)),
        ("z4,2000,2;X1,0", .removeBreakpoint(.accessWatchpoint, address: 0x2000, length: 2)),
        ("Z5,1000,1", .unsupported),
        ("Z0,1000", .malformed("Z/z: expected TYPE,ADDR,KIND")),
        ("Z0,xyz,1", .malformed("Z/z: bad address or kind")),
        ("k", .kill),
        ("D", .detach),
        ("D;1", .detach),
        ("qAttached", .queryAttached),
        ("qAttached:1", .queryAttached),
        ("qC", .queryCurrentThread),
        ("qfThreadInfo", .firstThreadInfo),
        ("qsThreadInfo", .nextThreadInfo),
        ("Hg0", .setThread(operation: UInt8(ascii: "g"), thread: .any)),
        ("Hc-1", .setThread(operation: UInt8(ascii: "c"), thread: .all)),
        ("Hgp1.1", .setThread(operation: UInt8(ascii: "g"), thread: .number(1))),
        ("H", .malformed("H: expected OP THREAD")),
        ("T1", .threadAlive(.number(1))),
        ("T", .malformed("T: bad thread id")),
        ("qOffsets", .unsupported),
        ("vMustReplyEmpty", .unsupported),
        ("qTStatus", .unsupported),
        ("!", .unsupported),
        ("", .unsupported),
        ("gg", .unsupported),
    ]

    @Test("packet to command", arguments: cases)
    func parse(_ packet: String, _ expected: GDBCommand) {
        #expect(GDBCommand(parsing: Array(packet.utf8)) == expected)
    }

    @Test("thread ids: -1, 0, hex, and the multiprocess form")
    func threadIDs() {
        #expect(GDBThreadID(parsing: Array("-1".utf8)) == .all)
        #expect(GDBThreadID(parsing: Array("0".utf8)) == .any)
        #expect(GDBThreadID(parsing: Array("1a".utf8)) == .number(0x1A))
        #expect(GDBThreadID(parsing: Array("p2.3".utf8)) == .number(3))
        #expect(GDBThreadID(parsing: Array("p2".utf8)) == nil)
        #expect(GDBThreadID(parsing: Array("-2".utf8)) == nil)
        #expect(GDBThreadID.number(1).includesTheThread && !GDBThreadID.number(2).includesTheThread)
    }
}
