import Glibc
import KVMKit
import MicroVM
import PageTables

// The command line: parses, reads the guest file, runs a machine, prints one line and exits with a status
// for anything that is not a normal end (README, "Exit status and errors").

claimStandardDescriptors()
TerminationSignals.install()
// Stray signals meant for someone else must not end a run: the kick signal gets its (no-op) handler now,
// and the user signals are ignored.
KVMSystem.installKickSignalHandler()
signal(SIGUSR1, SIG_IGN)
signal(SIGUSR2, SIG_IGN)

/// Prints `microvm: error: <message>` to standard error and exits with `status`.
func fail(_ message: String, status: Int32) -> Never {
    TerminationSignals.finishing()
    writeStandardError("microvm: error: \(message)\n")
    exit(status)
}

let arguments = (1..<Int(CommandLine.argc)).map { index in
    // SAFETY: argv holds argc NUL-terminated strings that live for the whole process.
    let argument = unsafe CommandLine.unsafeArgv[index]!
    return unsafe Array(UnsafeBufferPointer(start: argument, count: strlen(argument))).map { UInt8(bitPattern: $0) }
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
// A person steps through a guest at a person's pace: under gdb, no timeout unless one is asked for.
if options.gdbEndpoint != nil && !options.timeoutGiven { configuration.timeout = nil }
if options.restorePath != nil {
    // The snapshot brings its own memory.
} else if let path = options.guestPath {
    let file: GuestFile
    let magic: [UInt8]
    do throws(GuestFileError) {
        file = try GuestFile(path: path)
        magic = try file.read(at: 0, count: 4)
    } catch {
        fail(error.description, status: 2)
    }
    if ELFLayout.hasMagic(magic) {
        configuration.imageKind = .elf(loadELF(file, options: options))
    } else {
        // A flat image: the layout is checked for the file's size before the rest of it is read, so a file
        // that cannot fit is refused by its size, whatever it holds.
        do throws(MachineError) {
            try configuration.validateLayout(imageSize: file.size)
        } catch {
            fail(error.description, status: 2)
        }
        do throws(GuestFileError) {
            configuration.image = try file.readAll()
        } catch {
            fail(error.description, status: 2)
        }
    }
} else {
    configuration.image = DemoGuest.image(for: configuration.architecture)
}

/// Reads an ELF guest in three steps, each bounded: its headers (64 bytes, then the program header table),
/// then the layout is checked against this machine's RAM, and only then its segments' file bytes (which the
/// layout keeps inside RAM); symbols and sections are never read. Any problem ends the process with one line.
func loadELF(_ file: GuestFile, options: Options) -> ELFImage {
    if options.loadAddressGiven {
        fail(
            "--load does not apply to ELF guest \(file.name): its segments go to their physical addresses (p_paddr)",
            status: 2)
    }
    let read = { (offset: UInt64, count: Int) throws(ELFError) -> [UInt8] in
        do throws(GuestFileError) {
            return try file.read(at: offset, count: count)
        } catch {
            throw .readFailed(error.description)
        }
    }
    let image: ELFImage
    do throws(ELFError) {
        let layout = try ELFLayout(fileSize: file.size, architecture: options.configuration.architecture, read: read)
        do throws(MachineError) {
            try options.configuration.validateLayout(elf: layout)
        } catch {
            fail(error.description, status: 2)
        }
        image = try ELFImage(layout: layout, read: read)
    } catch .readFailed(let detail) {
        fail(detail, status: 2)
    } catch {
        fail("bad ELF guest \(file.name): \(error)", status: 2)
    }
    return image
}

/// When the run's timeout passes: a console write blocked on a full pipe gives up then.
nonisolated(unsafe) var runDeadline: ContinuousClock.Instant? = nil
configuration.console = .sink(standardOutputSink { unsafe runDeadline })
if options.trace {
    configuration.trace = { line in writeStandardError(line + "\n") }
}
let repeating = options.repeatCount > 1
configuration.resettable = repeating

let machine: Machine
if let restorePath = options.restorePath {
    do throws(SnapshotError) {
        let snapshot = try Snapshot(
            contentsOf: restorePath, architecture: options.architectureGiven ? configuration.architecture : nil)
        machine = try Machine(restoring: snapshot, configuration: configuration)
    } catch {
        fail(error.description, status: error.exitStatus)
    }
} else {
    do throws(MachineError) {
        machine = try Machine(configuration: configuration)
    } catch {
        fail(error.description, status: error.exitStatus)
    }
    // Repeated runs start from the boot state, unless the guest asks for a snapshot on the way.
    if repeating { takeSnapshot() }
}

/// Takes a snapshot (which also becomes the machine's reset point when it is resettable); fails the command
/// when it cannot.
@discardableResult
@MainActor func takeSnapshot() -> Snapshot {
    do throws(SnapshotError) {
        return try machine.snapshot()
    } catch {
        fail(error.description, status: error.exitStatus)
    }
}

/// Saves a snapshot of the machine to `--save-snapshot`'s file.
@MainActor func saveSnapshot(to path: String) {
    do throws(SnapshotError) {
        try takeSnapshot().write(to: path)
    } catch {
        fail(error.description, status: error.exitStatus)
    }
}

/// Ends the command after a terminating signal stopped the guest.
func stoppedBySignal(rip: UInt64, exits: Int) -> Never {
    let signal = TerminationSignals.received ?? SIGINT
    fail(
        "stopped by \(TerminationSignals.name(signal)): the guest was at RIP \(hex(rip)) after \(exits) exit\(exits == 1 ? "" : "s")",
        status: 128 + signal)
}

if options.dumpTables { writeStandardError("address space at boot:\n" + machine.dumpTables()) }
// Under gdb, the debugger runs the guest; the command goes on below only if gdb detached.
if let endpoint = options.gdbEndpoint {
    serveDebugger(machine, at: endpoint) {
        TerminationSignals.finishing()
        if options.dumpTables { writeStandardError("address space after the run:\n" + machine.dumpTables()) }
    }
}
TerminationSignals.running(machine.interrupter)

/// What each run ended with, counted, in the order first seen (for --repeat).
var outcomes: [(name: String, count: Int)] = []
var firstFailure: String? = nil
var lastResult: Result<RunOutcome, RunError> = .success(.halted)
var guestSnapshotTaken = false
for run in 1...options.repeatCount {
    unsafe runDeadline = configuration.timeout.map { ContinuousClock.now + $0 }
    var result = Result { () throws(RunError) in try machine.run() }
    while case .success(.snapshotRequested) = result {
        if let path = options.savePath {
            TerminationSignals.finishing()
            saveSnapshot(to: path)
            exit(0)
        }
        // Repeated runs start from the guest's own snapshot point, once it has reached it.
        if repeating && !guestSnapshotTaken {
            takeSnapshot()
            guestSnapshotTaken = true
        }
        result = Result { () throws(RunError) in try machine.run() }
    }
    lastResult = result
    if case .failure(.interrupted(let rip, let exits)) = result {
        TerminationSignals.finishing()
        stoppedBySignal(rip: rip, exits: exits)
    }
    let name: String
    switch result {
    case .success(let outcome): name = "status \(outcome.exitStatus)"
    case .failure(let error):
        name = String(error.description.prefix { $0 != ":" })
        if firstFailure == nil { firstFailure = "run \(run): \(error.description)" }
    }
    if let index = outcomes.firstIndex(where: { $0.name == name }) {
        outcomes[index].count += 1
    } else {
        outcomes.append((name, 1))
    }
    if run < options.repeatCount {
        do throws(SnapshotError) {
            try machine.reset()
        } catch {
            fail(error.description, status: error.exitStatus)
        }
    }
}
TerminationSignals.finishing()
if options.dumpTables { writeStandardError("address space after the run:\n" + machine.dumpTables()) }
if let path = options.savePath, case .success = lastResult { saveSnapshot(to: path) }
if repeating {
    let counts = outcomes.map { "\($0.count) x \($0.name)" }.joined(separator: ", ")
    writeStandardError(
        "microvm: \(options.repeatCount) runs: \(counts)\(firstFailure.map { " (first failure: \($0))" } ?? "")\n")
    switch lastResult {
    case .success(let outcome): exit(outcome.exitStatus)
    case .failure(let error): exit(error.exitStatus)
    }
}
switch lastResult {
case .success(let outcome):
    exit(outcome.exitStatus)
case .failure(let error):
    fail(error.description, status: error.exitStatus)
}
