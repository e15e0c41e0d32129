import Foundation
import KVMKit
import MicroVM
import Testing

/// Where the package lives (tests read Guests/ from it and run gdb there).
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// Whether this host has a usable /dev/kvm.
let kvmUsable = KVMSystem.isUsable(path: "/dev/kvm")
let kvmReason: Comment = "needs a readable and writable /dev/kvm"

/// The gdb executable, if installed (Debian's `gdb`; `.ci/run` installs it).
let gdbPath: String? = ["/usr/bin/gdb", "/usr/local/bin/gdb"].first {
    FileManager.default.isExecutableFile(atPath: $0)
}

/// `MICROVM_REQUIRE_GDB=1`: the gdb suites run (and fail) even where gdb is missing, instead of skipping.
let gdbRequired = ProcessInfo.processInfo.environment["MICROVM_REQUIRE_GDB"] == "1"

/// Whether the suites that drive the real gdb run: with gdb and KVM, or when gdb is required.
let gdbSuitesEnabled = kvmUsable && (gdbPath != nil || gdbRequired)
let gdbReason: Comment = "needs gdb (Debian's gdb package) and a usable /dev/kvm; MICROVM_REQUIRE_GDB=1 fails instead"

/// The gdb path, or a failure naming why there is none (where `MICROVM_REQUIRE_GDB=1` asked for it).
func requireGDB(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    try #require(gdbPath, "MICROVM_REQUIRE_GDB=1, but gdb is not installed", sourceLocation: sourceLocation)
}

/// The path of the debug guest.
let debugmePath = "Guests/swift/debugme64.elf"

/// The bytes of a file under the package root.
func packageFile(_ path: String) throws -> [UInt8] {
    try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(packageRoot)/\(path)")))
}

/// A machine configuration for the debug guest (an ELF), console captured, no timeout.
func debugmeConfiguration() throws -> MachineConfiguration {
    var configuration = MachineConfiguration(
        elf: try ELFImage(bytes: try packageFile(debugmePath), architecture: .amd64))
    configuration.console = .capture
    configuration.timeout = nil
    return configuration
}

/// A flat guest's configuration, console captured, no timeout.
func flatConfiguration(_ name: String) throws -> MachineConfiguration {
    var configuration = MachineConfiguration(architecture: .amd64, image: try packageFile("Guests/\(name).bin"))
    configuration.console = .capture
    configuration.timeout = nil
    return configuration
}

/// The built `microvm` executable (a sibling of the test bundle, or .build/debug).
var microvmPath: String {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("microvm")
    return FileManager.default.isExecutableFile(atPath: executable.path)
        ? executable.path : "\(packageRoot)/.build/debug/microvm"
}

/// A value shared between a test and the threads it starts.
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func read<T>(_ body: (Value) -> T) -> T { lock.withLock { body(value) } }
    func update(_ body: (inout Value) -> Void) { lock.withLock { body(&value) } }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
func wait(for timeout: Duration, until condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

// MARK: ELF symbols

/// A symbol of an ELF64 file's `.symtab`: its address and size.
struct ELFSymbol: Equatable {
    var address: UInt64
    var size: UInt64
}

/// The symbols of an ELF64 little-endian file by name, from its section headers (SHT_SYMTAB and the string
/// table it links to). Enough for the committed guests; no checks beyond the bounds of `bytes`.
func elfSymbols(_ bytes: [UInt8]) -> [String: ELFSymbol] {
    func read(_ offset: Int, _ count: Int) -> UInt64 {
        guard offset >= 0, offset + count <= bytes.count else { return 0 }
        return (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }
    let sectionTable = Int(read(0x28, 8))
    let entrySize = Int(read(0x3A, 2))
    let count = Int(read(0x3C, 2))
    func section(_ index: Int) -> (type: UInt64, offset: Int, size: Int, link: Int) {
        let base = sectionTable + index * entrySize
        return (read(base + 4, 4), Int(read(base + 0x18, 8)), Int(read(base + 0x20, 8)), Int(read(base + 0x28, 4)))
    }
    var symbols: [String: ELFSymbol] = [:]
    for index in 0..<count where section(index).type == 2 {  // SHT_SYMTAB
        let table = section(index)
        let strings = section(table.link)
        for entry in stride(from: table.offset, to: table.offset + table.size, by: 24) {
            var name = strings.offset + Int(read(entry, 4))
            var text: [UInt8] = []
            while name < bytes.count, bytes[name] != 0 {
                text.append(bytes[name])
                name += 1
            }
            symbols[String(decoding: text, as: UTF8.self)] = ELFSymbol(
                address: read(entry + 8, 8), size: read(entry + 16, 8))
        }
    }
    return symbols
}

/// A loadable segment of an ELF64 file: where it is mapped and how much memory it takes.
struct ELFSegment: Equatable {
    var virtualAddress: UInt64
    var memorySize: UInt64
}

/// The PT_LOAD segments of an ELF64 little-endian file, in program-header order.
func elfSegments(_ bytes: [UInt8]) -> [ELFSegment] {
    func read(_ offset: Int, _ count: Int) -> UInt64 {
        guard offset >= 0, offset + count <= bytes.count else { return 0 }
        return (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }
    let table = Int(read(0x20, 8))
    let size = Int(read(0x36, 2))
    return (0..<Int(read(0x38, 2))).compactMap { index in
        let header = table + index * size
        guard read(header, 4) == 1 else { return nil }  // PT_LOAD
        return ELFSegment(virtualAddress: read(header + 0x10, 8), memorySize: read(header + 0x28, 8))
    }
}
