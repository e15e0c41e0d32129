import Foundation
import Glibc
import Testing

/// A running `microvm --gdb ...`: its output collected as it comes, the port it listens on, its status.
final class MicrovmUnderGDB {
    let process = Process()
    private let stdout = Locked(Data())
    private let stderr = Locked(Data())
    private var readers: [Thread] = []

    /// Starts `microvm` with `arguments` (which should include `--gdb 127.0.0.1:0`) in the package root.
    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: microvmPath)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        for (pipe, buffer) in [(out, stdout), (err, stderr)] {
            let reader = Thread {
                while true {
                    let data = pipe.fileHandleForReading.availableData
                    if data.isEmpty { return }
                    buffer.update { $0.append(data) }
                }
            }
            reader.start()
            readers.append(reader)
        }
    }

    deinit {
        if process.isRunning { process.terminate() }
    }

    var standardOutput: String { stdout.read { String(decoding: $0, as: UTF8.self) } }
    var standardError: String { stderr.read { String(decoding: $0, as: UTF8.self) } }

    /// The port of its `microvm: waiting for gdb on 127.0.0.1:PORT` line, once printed (at most 10 s).
    func port() throws -> UInt16 {
        let prefix = "microvm: waiting for gdb on 127.0.0.1:"
        var port: UInt16?
        _ = wait(for: .seconds(10)) {
            guard let line = standardError.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else {
                return false
            }
            port = UInt16(line.dropFirst(prefix.count))
            return true
        }
        return try #require(port, "microvm printed no waiting line; stderr: \(standardError)")
    }

    /// Its exit status, once it exits (at most `timeout`), with every byte it wrote read.
    func status(within timeout: Duration = .seconds(20)) throws -> Int32 {
        let exited = wait(for: timeout) { !process.isRunning }
        if !exited { process.terminate() }
        try #require(exited, "microvm still running after \(timeout); stderr: \(standardError)")
        process.waitUntilExit()
        _ = wait(for: .seconds(5)) { readers.allSatisfy(\.isFinished) }
        return process.terminationStatus
    }
}

/// Runs gdb in batch mode in the package root: `file` loaded (if any), `commands` one `-ex` each. Returns
/// its output (stdout and stderr together).
///
/// `interruptAfter`: gdb gets a SIGINT (a user's Ctrl-C) this long after it started.
func runGDB(
    _ commands: [String], file: String? = nil, timeout: Duration = .seconds(60), interruptAfter: Duration? = nil
) throws -> String {
    let gdb = try requireGDB()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: gdb)
    process.arguments = ["-nx", "-q", "-batch"] + commands.flatMap { ["-ex", $0] } + (file.map { [$0] } ?? [])
    process.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
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
    let output = Locked(Data())
    let reader = Thread {
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        output.update { $0 = data }
    }
    reader.start()
    let started = ContinuousClock.now
    var interrupted = interruptAfter == nil
    let finished = wait(for: timeout) {
        if !interrupted, let interruptAfter, ContinuousClock.now - started >= interruptAfter {
            process.interrupt()
            interrupted = true
        }
        return !process.isRunning
    }
    if !finished { process.terminate() }
    _ = wait(for: .seconds(5)) { reader.isFinished }
    let text = output.read { String(decoding: $0, as: UTF8.self) }
    try #require(finished, "gdb timed out; its output:\n\(text)")
    return text
}

/// gdb's output as trimmed lines.
func lines(_ output: String) -> [String] {
    output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
}

/// `0x` and lowercase hex digits.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
