import Foundation
import GDBRemote
import Glibc
import Testing

/// The gdb executable, if installed (Debian's `gdb` package; scripts/test.sh installs it).
private let gdbPath: String? = ["/usr/bin/gdb", "/usr/local/bin/gdb"].first {
    FileManager.default.isExecutableFile(atPath: $0)
}

/// Runs gdb in batch mode with `commands`; returns its output (stdout and stderr), or `nil` on a timeout.
///
/// `interruptWhen`: once it returns true, gdb gets a SIGINT, as a user's Ctrl-C would send it.
private func runGDB(
    _ commands: [String], timeout: Duration = .seconds(60), interruptWhen: (() -> Bool)? = nil
) throws -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: gdbPath!)
    process.arguments = ["-nx", "-q", "-batch"] + commands.flatMap { ["-ex", $0] }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    process.standardInput = FileHandle.nullDevice
    // A child inherits the spawning thread's signal mask, and test-runner threads block SIGINT: gdb would
    // never see the Ctrl-C. Unblock it on this thread for the spawn only.
    var interruptOnly = sigset_t()
    var previous = sigset_t()
    sigemptyset(&interruptOnly)
    sigaddset(&interruptOnly, SIGINT)
    pthread_sigmask(SIG_UNBLOCK, &interruptOnly, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    try process.run()
    let output = Shared<Data>(Data())
    let reader = Thread {
        output.value = pipe.fileHandleForReading.readDataToEndOfFile()
    }
    reader.start()
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    var interruptSent = false
    while process.isRunning && clock.now < deadline {
        if !interruptSent, let interruptWhen, interruptWhen() {
            usleep(100_000)  // let the target spin a little
            process.interrupt()
            interruptSent = true
        }
        usleep(10_000)
    }
    if process.isRunning {
        process.terminate()
        return nil
    }
    _ = output.wait(timeout: .seconds(5)) { !$0.isEmpty }
    return String(decoding: output.value, as: UTF8.self)
}

@Suite(
    "The real gdb against the stub serving the fake target",
    .enabled(if: gdbPath != nil, "needs gdb (Debian's gdb package)"))
struct GDBIntegrationTests {
    @Test("connect, info registers, read and write memory, break, continue, stepi, detach")
    func session() throws {
        let server = ServerThread(makeTarget: { FakeTarget.standard() })
        let port = try #require(server.waitForPort(), "\(server.failure.value ?? "no port")")
        let output = try #require(
            try runGDB([
                "set confirm off",
                "set pagination off",
                "target remote 127.0.0.1:\(port)",
                "info registers",
                "x/4xb 0x1000",
                "set {unsigned char}0x2000 = 0x5a",
                "x/1xb 0x2000",
                "break *0x1005",
                "continue",
                "x/2xb 0x1005",
                "stepi",
                "info registers rip rax",
                "detach",
            ]), "gdb timed out")
        print(output)
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        func has(_ prefix: String, _ pattern: String? = nil) -> Bool {
            lines.contains { $0.hasPrefix(prefix) && (pattern == nil || $0.contains(pattern!)) }
        }
        #expect(has("0x0000000000001000 in ?? ()"))
        #expect(has("rip", "0x1000"))
        #expect(has("rsp", "0x2ff0"))
        #expect(has("rdi", "0x2000"))
        #expect(has("eflags"))
        #expect(has("cs"))
        #expect(has("fs_base"))
        #expect(has("cr0"))
        #expect(has("efer"))
        #expect(has("0x1000:", "0xb0\t0x01\t0x48\t0xff"))
        #expect(has("0x2000:", "0x5a"))
        #expect(has("Breakpoint 1 at 0x1005"))
        #expect(has("Breakpoint 1, 0x0000000000001005 in ?? ()"))
        #expect(has("0x1005:", "0x90\t0x88"))  // the planted INT3 is hidden
        #expect(has("0x0000000000001006 in ?? ()"))
        #expect(has("rax", "0x2"))
        #expect(has("[Inferior 1 (Remote target) detached]"))
        #expect(!output.contains("warning: Architecture rejected target-supplied description"))
        #expect(!output.contains("Remote 'g' packet reply is too long"))
        let report = try #require(server.waitForReport())
        #expect(report.end == .detached)
        #expect(report.rip == 0x1006)
        #expect(report.byte2000 == 0x5A)
        #expect(report.calls.contains("insert(software,1005,1)"))
        #expect(report.calls.filter { $0.hasPrefix("resume") } == ["resume(continue)", "resume(step)"])
    }

    @Test("gdb accepts the i386 description too")
    func i386() throws {
        let server = ServerThread(makeTarget: {
            let target = FakeTarget.standard(.i386)
            return target
        })
        let port = try #require(server.waitForPort())
        let output = try #require(
            try runGDB([
                "set confirm off", "target remote 127.0.0.1:\(port)", "show architecture", "info registers eip esp edi",
                "stepi", "info registers eip eax", "detach",
            ]), "gdb timed out")
        print(output)
        #expect(output.contains("(currently \"i386\")"))
        #expect(output.contains("eip            0x1000"))
        #expect(output.contains("esp            0x2ff0"))
        #expect(output.contains("0x00001002 in ?? ()"))
        #expect(output.contains("eax            0x1"))
        #expect(!output.contains("rejected"))
        let report = try #require(server.waitForReport())
        #expect(report.end == .detached)
    }

    @Test("Ctrl-C in gdb (SIGINT to gdb, 0x03 on the wire) stops a target spinning in jmp $")
    func interrupt() throws {
        let resumed = Shared(false)
        let server = ServerThread(makeTarget: {
            let target = FakeTarget.standard()
            target.load([0xEB, 0xFE], at: 0x1000)  // jmp $
            target.idleWait = .seconds(30)
            target.onResume = { resumed.value = true }
            return target
        })
        let port = try #require(server.waitForPort())
        let output = try #require(
            try runGDB(
                ["set confirm off", "target remote 127.0.0.1:\(port)", "continue", "info registers rip", "detach"],
                interruptWhen: { resumed.value }),
            "gdb timed out")
        print(output)
        #expect(output.contains("Program received signal SIGINT, Interrupt."))
        #expect(output.contains("rip            0x1000"))
        let report = try #require(server.waitForReport())
        #expect(report.end == .detached)
        // Stopped by the interrupt handler, not by the fake's 30 s idle limit.
        #expect(report.calls.contains("interrupted") && !report.calls.contains("idle timeout"))
    }
}
