@preconcurrency import Glibc
import KVMKit
import MicroVM
import PageTables

// The command line: parses, reads the guest file, runs a machine, prints one line and exits with a status
// for anything that is not a normal end (README, "Exit status and errors").

claimStandardDescriptors()
TerminationSignals.install()
// A stray kick signal from outside must not end the process before the first machine installs its handler.
KVMSystem.installKickSignalHandler()

/// Prints `microvm: error: <message>` to standard error and exits with `status`.
func fail(_ message: String, status: Int32) -> Never {
    TerminationSignals.finishing()
    writeStandardError("microvm: error: \(message)\n")
    exit(status)
}

let arguments = (1..<Int(CommandLine.argc)).map { index in
    // SAFETY: argv holds argc NUL-terminated strings that live for the whole process.
    let argument = CommandLine.unsafeArgv[index]!
    return Array(UnsafeBufferPointer(start: argument, count: strlen(argument))).map { UInt8(bitPattern: $0) }
}

let options: Options
do throws(UsageError) {
    options = try parseOptions(arguments)
} catch {
    fail(error.message, status: 2)
}
if options.showHelp {
    TerminationSignals.finishing()
    try? writeAll(fd: STDOUT_FILENO, Array((usage + "\n").utf8))
    exit(0)
}

var configuration = options.configuration
if let path = options.guestPath {
    // The layout is checked for the file's size before a byte of it is read: a file that cannot fit is
    // refused by its size, whatever it holds.
    let layout = configuration
    do throws(GuestFileError) {
        configuration.image = try GuestFile.read(path: path) { (size) throws(GuestFileError) in
            do throws(MachineError) {
                try layout.validateLayout(imageSize: size)
            } catch {
                throw GuestFileError(description: error.description)
            }
        }
    } catch {
        fail(error.description, status: 2)
    }
} else {
    configuration.image = DemoGuest.image(for: configuration.architecture)
}

/// When the run's timeout passes: a console write blocked on a full pipe gives up then.
nonisolated(unsafe) var runDeadline: ContinuousClock.Instant? = nil
configuration.console = .sink(standardOutputSink { runDeadline })
if options.trace {
    configuration.trace = { line in writeStandardError(line + "\n") }
}

let machine: Machine
do throws(MachineError) {
    machine = try Machine(configuration: configuration)
} catch {
    fail(error.description, status: error.exitStatus)
}
if options.dumpTables { writeStandardError("address space at boot:\n" + machine.dumpTables()) }
TerminationSignals.running(machine.interrupter)
runDeadline = configuration.timeout.map { ContinuousClock.now + $0 }
let result = Result { () throws(RunError) in try machine.run() }
TerminationSignals.finishing()
if options.dumpTables { writeStandardError("address space after the run:\n" + machine.dumpTables()) }
switch result {
case .success(let outcome):
    exit(outcome.exitStatus)
case .failure(.interrupted(let rip, let exits)):
    let signal = TerminationSignals.received ?? SIGINT
    fail(
        "stopped by \(TerminationSignals.name(signal)): the guest was at RIP 0x\(String(rip, radix: 16)) after \(exits) exit\(exits == 1 ? "" : "s")",
        status: 128 + signal)
case .failure(let error):
    fail(error.description, status: error.exitStatus)
}
