import GDBRemote
import Glibc
import Testing

@Suite("The TCP server: listening, one client, interrupts from a watcher thread")
struct ServerTests {
    @Test("endpoints parse HOST:PORT, :PORT and PORT, loopback by default")
    func endpoints() {
        #expect(GDBEndpoint(parsing: "127.0.0.1:1234") == GDBEndpoint(host: "127.0.0.1", port: 1234))
        #expect(GDBEndpoint(parsing: "0.0.0.0:1") == GDBEndpoint(host: "0.0.0.0", port: 1))
        #expect(GDBEndpoint(parsing: ":1234") == GDBEndpoint(port: 1234))
        #expect(GDBEndpoint(parsing: "1234") == GDBEndpoint(port: 1234))
        #expect(GDBEndpoint(parsing: "localhost:99")?.host == "127.0.0.1")
        #expect(GDBEndpoint(parsing: "host:") == nil)
        #expect(GDBEndpoint(parsing: "host:65536") == nil)
        #expect(GDBEndpoint(parsing: "host:-1") == nil)
        #expect(GDBEndpoint(parsing: "") == nil)
        #expect(GDBEndpoint(port: 1).host == "127.0.0.1")
    }

    @Test("a port already in use is a typed error with one line")
    func portInUse() throws {
        let first = try GDBServer()
        #expect(first.endpoint.port != 0)
        #expect(throws: GDBServerError.addressInUse(first.endpoint)) { try GDBServer(endpoint: first.endpoint) }
        let message = GDBServerError.addressInUse(first.endpoint).description
        #expect(message == "cannot listen for gdb on 127.0.0.1:\(first.endpoint.port): address already in use")
        #expect(!message.contains("\n"))
    }

    @Test("an address that is not IPv4 is refused before any socket exists")
    func invalidAddress() {
        #expect(throws: GDBServerError.invalidAddress("999.0.0.1")) {
            try GDBServer(endpoint: GDBEndpoint(host: "999.0.0.1", port: 0))
        }
        #expect(throws: GDBServerError.invalidAddress("example.org")) {
            try GDBServer(endpoint: GDBEndpoint(host: "example.org", port: 0))
        }
    }

    @Test("accept gives up after its timeout; a server accepts one client only")
    func acceptTimeout() throws {
        let server = try GDBServer()
        #expect(throws: GDBServerError.acceptTimedOut(server.endpoint)) {
            try server.accept(timeout: .milliseconds(20))
        }
        let port = server.endpoint.port
        let client = TestClient(port: port)
        #expect(client != nil)
        _ = try server.accept(timeout: .seconds(5))
        #expect(throws: GDBServerError.alreadyAccepted) { try server.accept(timeout: .zero) }
        #expect(TestClient(port: port) == nil)  // the listening socket is closed: refused
    }

    @Test("Ctrl-C over TCP while the target runs: the watcher thread interrupts it, then k ends the session")
    func interruptOverTCP() throws {
        let server = ServerThread {
            let target = FakeTarget.standard()
            target.load([0xEB, 0xFE], at: 0x1000)  // jmp $: runs until interrupted
            target.idleWait = .seconds(20)
            return target
        }
        let port = try #require(server.waitForPort())
        let client = try #require(TestClient(port: port))
        client.send(packet: "c")
        #expect(client.receive(atLeast: 1, timeout: .seconds(5)) == Array("+".utf8))
        usleep(100_000)  // the target is idling in `jmp $` now
        let clock = ContinuousClock()
        let start = clock.now
        client.send([GDBPacket.interruptByte])
        let stop = Array("$T02thread:1;#".utf8)
        let reply = client.receive(atLeast: stop.count + 2, timeout: .seconds(10))
        #expect(reply.starts(with: stop), "\(String(decoding: reply, as: UTF8.self))")
        #expect(clock.now - start < .seconds(5))
        client.send(packet: "k")
        let report = try #require(server.waitForReport())
        #expect(report.end == .killed)
        #expect(report.calls.contains("makeInterruptHandler") && report.calls.contains("interrupted"))
        #expect(report.calls.last == "kill")
    }

    @Test("a client vanishing mid-run stops the target and ends the session as a disconnect")
    func disconnectOverTCP() throws {
        let server = ServerThread {
            let target = FakeTarget.standard()
            target.load([0xEB, 0xFE], at: 0x1000)
            target.idleWait = .seconds(20)
            return target
        }
        let port = try #require(server.waitForPort())
        do {
            let client = try #require(TestClient(port: port))
            client.send(packet: "c")
            _ = client.receive(atLeast: 1, timeout: .seconds(5))
            usleep(50_000)
        }  // closed here
        let report = try #require(server.waitForReport(timeout: .seconds(10)))
        #expect(report.end == .disconnected)
    }
}
