import Foundation
import GDBRemote
import Glibc
import Synchronization

/// A value handed between the test's thread and a server thread. `@unchecked Sendable`: every access
/// goes through the lock.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }

    /// Polls until `condition` holds or `timeout` passes; returns whether it held.
    func wait(timeout: Duration, until condition: (Value) -> Bool) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if condition(value) { return true }
            usleep(2000)
        }
        return condition(value)
    }
}

/// Serves a fresh target on a thread of its own (a session runs on the thread that owns the target, as a
/// vCPU's thread would), and reports the port, the end, and what the target looked like at the end.
final class ServerThread: Sendable {
    struct Report: Sendable {
        var end: GDBSessionEnd
        var rip: UInt64
        var byte2000: UInt8?
        var calls: [String]
    }

    let port = Shared<UInt16?>(nil)
    let report = Shared<Report?>(nil)
    let failure = Shared<String?>(nil)

    init(makeTarget: @escaping @Sendable () -> FakeTarget, acceptTimeout: Duration = .seconds(30)) {
        let port = self.port
        let report = self.report
        let failure = self.failure
        let thread = Thread {
            let target = makeTarget()
            do {
                let server = try GDBServer()
                port.value = server.endpoint.port
                let end = try server.serve(target, acceptTimeout: acceptTimeout)
                report.value = Report(
                    end: end, rip: target.registers[.ip], byte2000: target.byte(at: 0x2000), calls: target.calls)
            } catch {
                failure.value = "\(error)"
            }
        }
        thread.start()
    }

    /// The port, once the server listens (or `nil` if it failed).
    func waitForPort() -> UInt16? {
        _ = port.wait(timeout: .seconds(10)) { $0 != nil } || failure.value != nil
        return port.value
    }

    /// The report, once the session ended.
    func waitForReport(timeout: Duration = .seconds(30)) -> Report? {
        _ = report.wait(timeout: timeout) { $0 != nil }
        return report.value
    }
}

/// A plain TCP client standing in for gdb.
final class TestClient {
    let fd: Int32

    init?(port: UInt16) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        // SAFETY: connect reads exactly sizeof(sockaddr_in) bytes of the live `address`.
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if connected != 0 {
            close(fd)
            return nil
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        // SAFETY: send reads the array's own bytes.
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func send(packet: String) { send(GDBPacket.framed(Array(packet.utf8))) }

    /// Reads until `expected` bytes have arrived, the peer closes, or `timeout` passes.
    func receive(atLeast expected: Int, timeout: Duration) -> [UInt8] {
        var received: [UInt8] = []
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.count < expected, clock.now < deadline {
            var waiting = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, 50) > 0 else { continue }
            // SAFETY: recv writes at most buffer.count bytes into the array's storage.
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer.prefix(count)
        }
        return received
    }
}
