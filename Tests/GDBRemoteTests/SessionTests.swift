import GDBRemote
import Testing

/// Runs a session over scripted packets; returns what the stub sent and how the session ended.
private func converse(
    _ target: FakeTarget, _ packets: [String], configure: (ScriptedTransport) -> Void = { _ in }
) -> (sent: [Sent], end: GDBSessionEnd, session: GDBSession) {
    let transport = ScriptedTransport(packets: packets)
    configure(transport)
    let session = GDBSession(target: target)
    let end = session.serve(over: transport)
    return (Sent.parse(transport.output), end, session)
}

/// The replies only (acks dropped), as payload strings.
private func replies(_ sent: [Sent]) -> [String] {
    sent.compactMap {
        if case .packet(let payload) = $0 { return payload }
        if case .corrupt(let text) = $0 { return "CORRUPT \(text)" }
        return nil
    }
}

@Suite("A session against the fake target: scripted packets, exact replies")
struct SessionTests {
    @Test("connection handshake: features, no-ack mode, the stop reason, thread queries")
    func handshake() {
        let (sent, end, _) = converse(
            .standard(),
            [
                "qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386", "vMustReplyEmpty", "QStartNoAckMode",
                "?", "qAttached", "qC", "qfThreadInfo", "qsThreadInfo", "Hg0", "Hc-1", "Hg2", "Hx1", "T1", "T2",
                "vCont?",
                "qOffsets", "qTStatus",
            ])
        #expect(
            sent == [
                .ack,
                .packet("PacketSize=1000;qXfer:features:read+;QStartNoAckMode+;vContSupported+;swbreak+;hwbreak+"),
                .ack, .packet(""),
                .ack, .packet("OK"),
                // No acks from here on.
                .packet("T05thread:1;"), .packet("0"), .packet("QC1"), .packet("m1"), .packet("l"), .packet("OK"),
                .packet("OK"), .packet("E16"), .packet("E16"), .packet("OK"), .packet("E16"), .packet("vCont;c;C;s;S"),
                .packet(""), .packet(""),
            ])
        #expect(end == .disconnected)
    }

    @Test("registers: g in description order, p and P by number, G of the whole file")
    func registers() {
        let target = FakeTarget.standard()
        target.registers[.ax] = 0x1122_3344_5566_7788
        target.registers[.flags] = 0x246
        let zeros = String(repeating: "0", count: 1184)
        let (sent, _, _) = converse(
            target,
            [
                "QStartNoAckMode", "p0", "p10", "p11", "p12", "P1=efbeadde00000000", "p1", "p39", "p40", "G" + zeros,
                "p0", "G00", "P0=00", "P40=00", "pfffffffffffffff",
            ])
        // Numbers are hex: 0x10 is rip, 0x11 eflags, 0x12 cs, 0x39 (57) fs_base, 0x40 (64) one past efer.
        #expect(
            replies(sent) == [
                "OK", "8877665544332211", "0010000000000000", "46020000", "00000000", "OK", "efbeadde00000000",
                "0000000000000000", "E16", "OK", "0000000000000000", "E16", "E16", "E16", "E16",
            ])
        #expect(target.registers == GDBRegisterFile(architecture: .amd64))
    }

    @Test("the g reply is every register's bytes as hex, rax first, rip at byte 128")
    func registerPacket() {
        let target = FakeTarget.standard()
        target.registers[.ax] = 0x1122_3344_5566_7788
        let (sent, _, _) = converse(target, ["g"])
        guard case .packet(let hex) = sent.last else {
            Issue.record("no reply: \(sent)")
            return
        }
        #expect(hex.count == 2 * 592)
        #expect(hex.hasPrefix("8877665544332211" + String(repeating: "0", count: 16)))
        let rip = hex.dropFirst(256).prefix(16)
        #expect(rip == "0010000000000000")
    }

    @Test("memory: reads, partial reads at a hole, faults, huge counts, writes, binary writes")
    func memory() {
        let target = FakeTarget.standard()
        let (sent, _, session) = converse(
            target,
            [
                "QStartNoAckMode", "m1000,4", "m2ffe,4", "m3000,1", "m0,1", "mffffffffffffffff,ffffffff", "m1000,0",
                "M2000,2:abCD", "m2000,2", "X2002,2:}\u{03}}]", "m2002,2", "X2004,0:", "M3000,1:00", "M2fff,2:0000",
                "m2fff,1", "Mffffffffffffffff,2:0000", "M2000,4:0* 0* ", "m2000,4",
            ])
        #expect(
            replies(sent) == [
                "OK", "b00148ff", "0000", "E0e", "E0e", "E0e", "E16",
                "OK", "abcd", "OK", "237d", "OK", "E0e", "E0e",
                "00", "E16", "OK", "00000000",
            ])
        // A failed write changed nothing: the byte before the hole is still 0.
        #expect(target.byte(at: 0x2FFF) == 0)
        #expect(session.statistics.largestReply <= session.maximumPacketSize)
    }

    @Test("a read longer than a packet is cut to fit, and gdb asks again")
    func longRead() {
        let (sent, _, session) = converse(.standard(), ["m1000,ffff"])
        guard case .packet(let hex) = sent.last else {
            Issue.record("no reply")
            return
        }
        #expect(hex.count == session.maximumPacketSize)
        #expect(hex.hasPrefix("b00148ffc090880790f4"))
    }

    @Test("a software breakpoint, a step, a watchpoint, and the exit")
    func runToBreakpointStepWatchAndExit() {
        let target = FakeTarget.standard()
        let (sent, end, session) = converse(
            target,
            [
                "qSupported:swbreak+;hwbreak+", "QStartNoAckMode", "Z0,1005,1", "c", "p10", "m1004,3", "M1005,1:90",
                "z0,1005,1", "s", "p10",
                "Z2,2000,1", "vCont;c", "p10", "m2000,1", "c",
                "?",  // never read: the session ended with the exit
            ])
        #expect(
            Array(replies(sent).dropFirst(2)) == [
                // The planted INT3 at 0x1005 reads as the nop it hides, and a write there keeps it planted.
                "OK", "T05swbreak:;thread:1;", "0510000000000000", "c09088", "OK",
                "OK", "T05thread:1;", "0610000000000000",
                "OK", "T05watch:2000;thread:1;", "0810000000000000", "02", "W02",
            ])
        #expect(end == .targetEnded(.exited(status: 2)))
        #expect(session.statistics.resumes == 4)
        #expect(
            target.calls.filter { $0.hasPrefix("resume") } == [
                "resume(continue)", "resume(step)", "resume(continue)", "resume(continue)",
            ])
        #expect(target.calls.contains("makeInterruptHandler"))
    }

    @Test("without swbreak+ from gdb, breakpoint stops are plain T05")
    func plainBreakpointStops() {
        let (sent, _, _) = converse(.standard(), ["qSupported", "Z0,1005,1", "c", "Z1,1006,1", "z0,1005,1", "c"])
        #expect(
            replies(sent) == [
                "PacketSize=1000;qXfer:features:read+;QStartNoAckMode+;vContSupported+", "OK", "T05thread:1;", "OK",
                "OK",
                "T05thread:1;",
            ])
    }

    @Test("c ADDR and s ADDR move the program counter first")
    func resumeAtAddress() {
        let target = FakeTarget.standard()
        let (sent, _, _) = converse(target, ["s1005", "p10", "c1009"])
        #expect(replies(sent) == ["T05thread:1;", "0610000000000000", "W00"])
    }

    @Test("hardware slots run out after four; misaligned watchpoints are refused")
    func hardwareSlots() {
        let (sent, _, _) = converse(
            .standard(),
            [
                "Z1,1000,1", "Z1,1002,1", "Z2,2000,8", "Z4,2008,4", "Z1,1005,1", "z1,1000,1", "Z1,1005,1", "Z3,2001,2",
                "Z1,1005,1",
            ])
        #expect(replies(sent) == ["OK", "OK", "OK", "OK", "E1c", "OK", "OK", "E16", "OK"])
    }

    @Test("Ctrl-C while running stops the target with SIGINT")
    func interruptWhileRunning() {
        let target = FakeTarget.standard()
        target.load([0xEB, 0xFE], at: 0x1000)  // jmp $
        target.idleWait = .seconds(5)
        let clock = ContinuousClock()
        let start = clock.now
        let (sent, _, session) = converse(target, ["c"]) { $0.bytesWhileRunning = [[0x03]] }
        #expect(replies(sent) == ["T02thread:1;"])
        #expect(session.statistics.interrupts == 1)
        #expect(clock.now - start < .seconds(4))
    }

    @Test("an interrupt byte that arrived with the resume packet still interrupts")
    func interruptInSameChunk() {
        let transport = ScriptedTransport(chunks: [GDBPacket.framed(Array("s".utf8)) + [0x03]])
        let target = FakeTarget.standard()
        _ = GDBSession(target: target).serve(over: transport)
        #expect(replies(Sent.parse(transport.output)) == ["T02thread:1;"])
        #expect(target.registers[.ip] == 0x1000)
    }

    @Test("acks: a bad checksum is answered '-', a '-' from gdb resends the last reply, '+' is silent")
    func acknowledgements() {
        let transport = ScriptedTransport(chunks: [
            Array("$g#00".utf8), Array("$?#3f".utf8), Array("-".utf8), Array("+".utf8), [0x03], Array("junk".utf8),
        ])
        _ = GDBSession(target: FakeTarget.standard()).serve(over: transport)
        #expect(Sent.parse(transport.output) == [.nack, .ack, .packet("T05thread:1;"), .packet("T05thread:1;")])
    }

    @Test("in no-ack mode a bad checksum is dropped silently and '-' resends nothing")
    func noAckMode() {
        let transport = ScriptedTransport(chunks: [
            GDBPacket.framed(Array("QStartNoAckMode".utf8)), Array("+$g#00".utf8), Array("-".utf8),
            GDBPacket.framed(Array("?".utf8)),
        ])
        _ = GDBSession(target: FakeTarget.standard()).serve(over: transport)
        #expect(Sent.parse(transport.output) == [.ack, .packet("OK"), .packet("T05thread:1;")])
    }

    @Test("an oversized packet is acknowledged, refused with E07, and not buffered")
    func oversizedPacket() {
        let huge = "M1000,1000:" + String(repeating: "00", count: 0x1000)
        let (sent, _, _) = converse(.standard(), [huge, "?"])
        #expect(sent == [.ack, .packet("E07"), .ack, .packet("T05thread:1;")])
    }

    @Test("a malformed run length is refused with E16")
    func badRunLength() {
        let (sent, _, _) = converse(.standard(), ["*!"])
        #expect(sent == [.ack, .packet("E16")])
    }

    @Test("k kills the target without a reply; D detaches with OK; both end the session")
    func killAndDetach() {
        let killed = FakeTarget.standard()
        let (killSent, killEnd, _) = converse(killed, ["k", "?"])
        #expect(killSent == [.ack])
        #expect(killEnd == .killed && killed.killed)

        let detached = FakeTarget.standard()
        let (detachSent, detachEnd, _) = converse(detached, ["Z0,1005,1", "D;1", "?"])
        #expect(detachSent == [.ack, .packet("OK"), .ack, .packet("OK")])
        #expect(detachEnd == .detached && detached.detached && detached.planted.originals.isEmpty)
        #expect(detached.byte(at: 0x1005) == 0x90)
    }

    @Test("a resume that throws tells gdb X06 and ends the session with the reason")
    func targetFailure() {
        struct Broken: Error, CustomStringConvertible { var description: String { "KVM_RUN failed" } }
        let target = FakeTarget.standard()
        target.resumeError = Broken()
        let (sent, end, _) = converse(target, ["c", "?"])
        #expect(replies(sent) == ["X06"])
        #expect(end == .targetFailed("KVM_RUN failed"))
    }

    @Test("a guest fault is a signal stop; an unknown instruction SIGILL")
    func faults() {
        let target = FakeTarget.standard()
        target.registers[.di] = 0x3000  // the store goes to the hole
        let (sent, _, _) = converse(target, ["c", "c1008", "M1008,1:0f", "s"])
        #expect(replies(sent) == ["T0bthread:1;", "W02"])
        let second = FakeTarget.standard()
        second.load([0x0F, 0x0B], at: 0x1000)
        #expect(replies(converse(second, ["c", "p10"]).sent) == ["T04thread:1;", "0010000000000000"])
    }

    @Test("gdb disconnecting mid-run ends the session cleanly")
    func disconnectWhileRunning() {
        let (sent, end, _) = converse(.standard(), ["Z0,1005,1", "c"]) { $0.disconnectWhileRunning = true }
        #expect(sent == [.ack, .packet("OK"), .ack])
        #expect(end == .disconnected)
    }

    @Test("qXfer serves the description in chunks: m while more follows, l at the end, E00 for an unknown annex")
    func targetDescriptionChunks() throws {
        let description = GDBTargetDescription(architecture: .amd64)
        let document = try #require(description.documents["target.xml"])
        let (sent, _, _) = converse(
            .standard(),
            [
                "qXfer:features:read:target.xml:0,20",
                "qXfer:features:read:target.xml:\(hex(document.utf8.count)),20",
                "qXfer:features:read:nope.xml:0,20", "qXfer:features:read:target.xml:0,ffff",
            ])
        #expect(
            replies(sent) == [
                "m" + String(document.prefix(32)), "l", "E00", "l" + document,
            ])
    }

    @Test("every feature document gdb is pointed to is served")
    func includesAreServed() {
        for architecture in GDBArchitecture.allCases {
            let description = GDBTargetDescription(architecture: architecture)
            let root = description.documents["target.xml"]!
            for feature in architecture.features {
                let annex = GDBTargetDescription.annex(of: feature, architecture: architecture)
                #expect(root.contains("<xi:include href=\"\(annex)\"/>"))
                #expect(description.documents[annex]?.contains("<feature name=\"\(feature.rawValue)\">") == true)
            }
        }
    }
}
