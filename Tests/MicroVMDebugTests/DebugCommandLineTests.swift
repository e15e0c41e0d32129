import Foundation
import Glibc
import Testing

/// A bare TCP client speaking the remote protocol byte by byte, for what gdb itself never sends.
final class RawClient {
    let socket: Int32

    init(port: UInt16) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(connected == 0, "connect to 127.0.0.1:\(port) failed: errno \(errno)")
    }

    deinit { close(socket) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes {
                Glibc.send(socket, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            guard sent > 0 else { return }
            offset += sent
        }
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    /// `$payload#checksum`.
    func sendPacket(_ payload: String) {
        let checksum = payload.utf8.reduce(UInt8(0)) { $0 &+ $1 }
        send("$\(payload)#\(String(format: "%02x", checksum))")
    }

    /// Whatever arrives until `expected` bytes are in or `timeout` passes.
    func receive(until expected: String, timeout: Duration = .seconds(10)) -> String {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while !String(decoding: received, as: UTF8.self).contains(expected), ContinuousClock.now < deadline {
            var waiting = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, 50) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer.prefix(count)
        }
        return String(decoding: received, as: UTF8.self)
    }
}

/// The `--gdb` endings without gdb: ports in use, clients that drop, hostile bytes, signals.
@Suite("microvm --gdb ends every session with one line and a documented status", .enabled(if: kvmUsable, kvmReason))
struct DebugCommandLineTests {
    @Test("a port already in use: one line, status 2, nothing run")
    func portInUse() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 1) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        try #require(bound)
        let port = UInt16(bigEndian: address.sin_port)
        let microvm = try MicrovmUnderGDB(["--gdb", "127.0.0.1:\(port)", "Guests/hello64.bin"])
        #expect(try microvm.status() == 2)
        #expect(
            microvm.standardError
                == "microvm: error: cannot listen for gdb on 127.0.0.1:\(port): address already in use\n")
        #expect(microvm.standardOutput == "")
    }

    @Test("a client that connects and drops: one line naming where the guest stood, status 129")
    func connectAndDrop() throws {
        let microvm = try MicrovmUnderGDB(["--gdb", ":0", "Guests/loop64.bin"])
        let port = try microvm.port()
        _ = try RawClient(port: port)  // connects, and closes at once
        #expect(try microvm.status() == 129)
        #expect(
            microvm.standardError
                == "microvm: waiting for gdb on 127.0.0.1:\(port)\nmicrovm: error: gdb disconnected before the guest ended: it was stopped at RIP 0x100000 after 0 exits\n"
        )
        #expect(microvm.standardOutput == "")
    }

    @Test("a client that drops while the guest runs: the guest is stopped, one line, status 129")
    func dropWhileRunning() throws {
        let microvm = try MicrovmUnderGDB(["--gdb", ":0", "Guests/loop64.bin"])
        let port = try microvm.port()
        do {
            let client = try RawClient(port: port)
            client.sendPacket("c")
            #expect(client.receive(until: "+") == "+")
            _ = wait(for: .seconds(5)) { microvm.standardOutput == "looping\n" }
            usleep(200_000)
        }
        #expect(try microvm.status() == 129)
        #expect(
            microvm.standardError
                == "microvm: waiting for gdb on 127.0.0.1:\(port)\nmicrovm: error: gdb disconnected before the guest ended: it was stopped at RIP 0x100015 after 8 exits\n"
        )
    }

    @Test("garbage, a bad checksum and an oversized packet get their refusals; the session goes on to a detach")
    func hostileBytes() throws {
        let microvm = try MicrovmUnderGDB(["--gdb", ":0", debugmePath])
        let port = try microvm.port()
        let client = try RawClient(port: port)
        client.send([0x68, 0x69, 0x00, 0xFF, 0x23, 0x7D])  // skipped as garbage
        client.send("$g#00")
        #expect(client.receive(until: "-") == "-")
        client.sendPacket("m" + String(repeating: "0", count: 5000))
        #expect(client.receive(until: "#") == "+$E07#ac")
        client.sendPacket("m0,8")
        #expect(client.receive(until: "#") == "+$E0e#da")  // page 0 is never mapped
        client.sendPacket("?")
        #expect(client.receive(until: "#").hasPrefix("+$T05thread:1;#"))
        client.sendPacket("D")
        #expect(client.receive(until: "#").hasPrefix("+$OK#"))
        #expect(try microvm.status() == 42)
        #expect(microvm.standardOutput == "debugme: start\ndebugme: magic 0123456789abcdef\ndebugme: total 42\n")
        #expect(microvm.standardError == "microvm: waiting for gdb on 127.0.0.1:\(port)\n")
    }

    @Test("detach after a fault: the fault's line and status, not a run of a machine that cannot run")
    func detachAfterFault() throws {
        let microvm = try MicrovmUnderGDB(["--gdb", ":0", "Guests/nullread64.bin"])
        let port = try microvm.port()
        let client = try RawClient(port: port)
        client.sendPacket("c")
        #expect(client.receive(until: "#").hasPrefix("+$T0bthread:1;#"))  // SIGSEGV
        client.sendPacket("D")
        #expect(client.receive(until: "#").hasPrefix("+$OK#"))
        #expect(try microvm.status() == 125)
        let lines = microvm.standardError.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.last?.hasPrefix("microvm: error: triple fault: RIP 0x100021") == true)
    }

    @Test("SIGTERM while gdb is served: one line, status 143")
    func terminated() throws {
        let microvm = try MicrovmUnderGDB(["--gdb", ":0", "Guests/loop64.bin"])
        let port = try microvm.port()
        kill(microvm.process.processIdentifier, SIGTERM)
        #expect(try microvm.status() == 143)
        #expect(
            microvm.standardError
                == "microvm: waiting for gdb on 127.0.0.1:\(port)\nmicrovm: error: stopped by SIGTERM while serving gdb\n"
        )
    }

    @Test("an address that is not IPv4: one line, status 2")
    func badHost() throws {
        let microvm = try MicrovmUnderGDB(["--gdb", "gdb.example:1234", "Guests/hello64.bin"])
        #expect(try microvm.status() == 2)
        #expect(
            microvm.standardError == "microvm: error: cannot listen for gdb on 'gdb.example': not an IPv4 address\n")
    }
}

/// `--gdb` mistakes on the command line, refused before anything is opened.
@Suite("microvm --gdb refuses bad command lines")
struct DebugUsageTests {
    func expectUsage(_ arguments: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws
    {
        let microvm = try MicrovmUnderGDB(arguments)
        #expect(try microvm.status() == 2, sourceLocation: sourceLocation)
        #expect(microvm.standardError == "microvm: error: \(message)\n", sourceLocation: sourceLocation)
    }

    @Test func badPort() throws {
        try expectUsage(["--gdb", "99999"], "--gdb: '99999' is not [HOST]:PORT (e.g. 127.0.0.1:1234 or :1234)")
        try expectUsage(["--gdb", "host:"], "--gdb: 'host:' is not [HOST]:PORT (e.g. 127.0.0.1:1234 or :1234)")
        try expectUsage(["--gdb"], "--gdb needs a value")
    }

    @Test func withRepeatOrSnapshot() throws {
        try expectUsage(["--gdb", ":1234", "--repeat", "2"], "--repeat does not go with --gdb: gdb debugs one run")
        try expectUsage(
            ["--gdb", ":1234", "--save-snapshot", "x.snap"],
            "--save-snapshot does not go with --gdb: the guest's snapshot requests run on under gdb")
        try expectUsage(["--gdb", ":1", "--gdb", ":2"], "--gdb is given more than once")
    }
}
