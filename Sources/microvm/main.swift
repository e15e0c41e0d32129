@preconcurrency import Glibc
import MicroVM
import PageTables

/// Prints `microvm: error: <message>` to standard error and exits with `status`.
func fail(_ message: String, status: Int32) -> Never {
    writeStandardError("microvm: error: \(message)\n")
    exit(status)
}

let options: Options
do {
    options = try parseOptions(Array(CommandLine.arguments.dropFirst()))
} catch {
    fail(error.message, status: 2)
}
if options.showHelp {
    print(usage)
    exit(0)
}

var configuration = options.configuration
if let path = options.guestPath {
    do {
        configuration.image = try GuestFile.read(path: path)
    } catch {
        fail(error.description, status: 2)
    }
} else {
    configuration.image = DemoGuest.image(for: configuration.architecture)
}

/// Builds and runs the machine, dumping the tables around the run when asked.
func boot(_ configuration: MachineConfiguration, dumpTables: Bool) throws(MachineError) -> RunOutcome {
    let machine = try Machine(configuration: configuration)
    if dumpTables { writeStandardError("address space at boot:\n" + machine.dumpTables()) }
    defer {
        if dumpTables { writeStandardError("address space after the run:\n" + machine.dumpTables()) }
    }
    return try machine.run()
}

do {
    exit(try boot(configuration, dumpTables: options.dumpTables).exitStatus)
} catch {
    fail(error.description, status: error.exitStatus)
}
