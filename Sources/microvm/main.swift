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
configuration.console = .sink(standardOutputSink { runDeadline })
if options.trace {
    configuration.trace = { line in writeStandardError(line + "\n") }
}

/// Builds and runs the machine, dumping the tables around the run when asked.
func boot(_ configuration: MachineConfiguration, dumpTables: Bool) throws(MachineError) -> RunOutcome {
    let machine = try Machine(configuration: configuration)
    if dumpTables { writeStandardError("address space at boot:\n" + machine.dumpTables()) }
    TerminationSignals.running(machine.interrupter)
    runDeadline = configuration.timeout.map { ContinuousClock.now + $0 }
    defer {
        TerminationSignals.finishing()
        if dumpTables { writeStandardError("address space after the run:\n" + machine.dumpTables()) }
    }
    return try machine.run()
}

do throws(MachineError) {
    exit(try boot(configuration, dumpTables: options.dumpTables).exitStatus)
} catch .interrupted(let rip, let exits) {
    let signal = TerminationSignals.received ?? SIGINT
    fail(
        "stopped by \(TerminationSignals.name(signal)): the guest was at RIP 0x\(String(rip, radix: 16)) after \(exits) exit\(exits == 1 ? "" : "s")",
        status: 128 + signal)
} catch {
    fail(error.description, status: error.exitStatus)
}
