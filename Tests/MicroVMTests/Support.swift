import Foundation
import KVMKit
@_spi(Testing) import MicroVM
import PageTables
import Testing

/// Where the package lives (tests read Guests/*.bin from it).
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The bytes of `Guests/<name>.bin`.
func guest(_ name: String) throws -> [UInt8] {
    try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(packageRoot)/Guests/\(name).bin")))
}

/// `value` in lowercase hexadecimal after `prefix`, zero-padded to at least `digits` digits: the one hex
/// formatter of this test target (`hex(0x1f)` is "0x1f", `hex(0x1f, digits: 4, prefix: "")` is "001f").
func hex(_ value: UInt64, digits: Int = 1, prefix: String = "0x") -> String {
    let text = String(value, radix: 16)
    return prefix + String(repeating: "0", count: max(0, digits - text.count)) + text
}

/// Whether this host has a usable /dev/kvm: KVM suites run exactly when it does.
let kvmUsable = KVMSystem.isUsable(path: "/dev/kvm")
let kvmReason: Comment = "needs a readable and writable /dev/kvm"

/// Whether this host's KVM can run 32-bit paging (kvm_pvm cannot): set CR0.PG in protected mode, read back.
let kvmRuns32BitPaging: Bool = {
    guard kvmUsable else { return false }
    var configuration = MachineConfiguration(architecture: .i686, image: [0xF4])
    configuration.console = .discard
    do {
        _ = try Machine(configuration: configuration)
        return true
    } catch {
        return false
    }
}()

/// A configuration for a committed guest, capturing the console.
func configuration(_ name: String, _ architecture: Architecture = .amd64) throws -> MachineConfiguration {
    var configuration = MachineConfiguration(architecture: architecture, image: try guest(name))
    configuration.console = .capture
    configuration.timeout = .seconds(5)
    return configuration
}

/// The result of running the `microvm` executable.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the built `microvm` (a sibling of the test bundle) with `arguments`.
func runMicrovm(_ arguments: [String]) throws -> CommandResult {
    try runProgram("microvm", arguments)
}

/// Runs one of the package's executables, built next to the test bundle.
func runProgram(_ name: String, _ arguments: [String]) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executablePath(name))
    process.arguments = arguments
    return try run(process)
}

/// Runs `process` in the package root, collecting both output streams at once (a child that fills one
/// pipe while the parent waits on the other would never finish).
func run(_ process: Process) throws -> CommandResult {
    process.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Standard error is read on a second thread while this one reads standard output.
    nonisolated(unsafe) var stderr = Data()
    let finished = DispatchSemaphore(value: 0)
    Thread {
        stderr = err.fileHandleForReading.readDataToEndOfFile()
        finished.signal()
    }.start()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    finished.wait()
    process.waitUntilExit()
    return CommandResult(
        status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
        stderr: String(decoding: stderr, as: UTF8.self))
}

/// A scratch file path under the system temporary directory.
func temporaryPath(_ name: String) -> String {
    NSTemporaryDirectory() + "microvm-tests-\(getpid())-\(name)"
}

/// The built `microvm` executable.
var microvmPath: String { executablePath("microvm") }

/// The path of one of the package's executables, built next to the test bundle.
func executablePath(_ name: String) -> String {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent(name)
    return FileManager.default.isExecutableFile(atPath: executable.path)
        ? executable.path : "\(packageRoot)/.build/debug/\(name)"
}

/// Runs `command` with `/bin/sh -c` in the package root, `$MICROVM` naming the built `microvm`.
func runShell(_ command: String) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    var environment = ProcessInfo.processInfo.environment
    environment["MICROVM"] = microvmPath
    environment["MICROVM_SOAK"] = executablePath("microvm-soak")
    process.environment = environment
    return try run(process)
}
