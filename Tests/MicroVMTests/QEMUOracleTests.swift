import Foundation
@_spi(Testing) import MicroVM
import PageTables
import Testing

// The QEMU oracle (design.md §5, issue 4): i686 paging and amd64 1 GiB leaves cannot run on this machine's
// KVM (kvm_pvm), so the host-built memory image (tables, GDT, boot information, probe list, probe guest) is
// exported as raw files and booted under QEMU's software MMU (TCG) through a 64 KiB -bios trampoline
// (Guests/qemu/tramp32.S, tramp64.S) that loads CR3 and turns paging on. The probe guest runs in console mode
// (boot-info flag bit 0): it prints one `R ...` line per probe, `F ...` for a fatal exception, `D` when done,
// and ends QEMU through isa-debug-exit. Every report is checked twice: against values written out by hand
// from the mappings the test asked for, and against what the engine's `lookup` of the live tables predicts.

// MARK: - Finding QEMU

/// The path of `name` on PATH or in /usr/bin, if it is an executable file.
func executableOnPath(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    for directory in path.split(separator: ":").map(String.init) + ["/usr/bin"] {
        let candidate = directory + "/" + name
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

let qemuI386 = executableOnPath("qemu-system-i386")
let qemuX86_64 = executableOnPath("qemu-system-x86_64")
let qemuUsable = qemuI386 != nil && qemuX86_64 != nil && executableOnPath("timeout") != nil
let qemuReason: Comment = "needs qemu-system-x86 (Debian), installed by .ci/run"

// MARK: - The probe guest's console protocol

/// What the probe guest printed in console mode (docs/layout.md, "Hypercalls").
struct ProbeConsole: Equatable, CustomStringConvertible {
    /// `R <index> <outcome> <a> <b> <c> <d>` lines, as six numbers each.
    var reports: [[UInt64]] = []
    /// The `F <vector> <error> <cr2> <rip>` line, if any.
    var fatal: [UInt64]? = nil
    /// Whether the `D` line came.
    var done = false
    /// The addresses of `C <cr2>` lines (copy-on-write requests; only with boot-info flag bit 1), in order.
    var copyOnWriteRequests: [UInt64] = []
    /// Lines that are none of those (must stay empty).
    var otherLines: [String] = []

    init(parsing text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let fields = line.split(separator: " ").map(String.init)
            let numbers = fields.dropFirst().map { UInt64($0, radix: 16) }
            switch fields.first {
            case "R" where numbers.count == 6 && numbers.allSatisfy({ $0 != nil }):
                reports.append(numbers.map { $0! })
            case "F" where numbers.count == 4 && numbers.allSatisfy({ $0 != nil }):
                fatal = numbers.map { $0! }
            case "D" where numbers.isEmpty:
                done = true
            case "C" where numbers.count == 1 && numbers[0] != nil:
                copyOnWriteRequests.append(numbers[0]!)
            case nil where line.isEmpty:
                break
            default:
                otherLines.append(line)
            }
        }
    }

    var description: String {
        (copyOnWriteRequests.map { "C " + String($0, radix: 16) }
            + reports.map { "R " + $0.map { String($0, radix: 16) }.joined(separator: " ") }
            + (fatal.map { ["F " + $0.map { String($0, radix: 16) }.joined(separator: " ")] } ?? [])
            + (done ? ["D"] : []) + otherLines).joined(separator: "\n")
    }
}

// MARK: - Running a boot image under QEMU

struct QEMURun {
    /// QEMU's exit status: isa-debug-exit turns the guest's `out` of V into (V << 1) | 1, so the probe
    /// guest's `D` ends with 1 and its `F` with 3; 124 / 137 mean `timeout` had to stop it.
    var status: Int32
    var console: ProbeConsole
    var standardOutput: String
    var standardError: String
}

/// Exports `image`'s RAM as [0, 0xA0000) and [0x100000, RAM size) (QEMU's pc machine has the VGA hole and
/// the BIOS between) and boots it with the trampoline for its architecture, killing QEMU after `seconds`.
func runOnQEMU(_ image: BootImage, seconds: Int = 20) throws -> QEMURun {
    let architecture = image.configuration.architecture
    let memorySize = image.configuration.memorySize
    precondition(memorySize & 0xF_FFFF == 0 && memorySize > 0x10_0000, "RAM must be whole MiB above 1 MiB")
    let qemu = architecture == .amd64 ? qemuX86_64! : qemuI386!
    let trampoline = "\(packageRoot)/Guests/qemu/\(architecture == .amd64 ? "tramp64" : "tramp32").bin"

    let directory = temporaryPath("qemu-\(UInt64.random(in: 0...UInt64.max))")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let low = try #require(image.memory.read(at: 0, count: 0xA_0000))
    let high = try #require(image.memory.read(at: 0x10_0000, count: Int(memorySize - 0x10_0000)))
    try Data(low).write(to: URL(fileURLWithPath: "\(directory)/low.bin"))
    try Data(high).write(to: URL(fileURLWithPath: "\(directory)/high.bin"))
    _ = FileManager.default.createFile(atPath: "\(directory)/stderr", contents: nil)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: executableOnPath("timeout")!)
    process.arguments = [
        "-s", "KILL", "\(seconds)", qemu,
        "-M", "pc", "-cpu", "max", "-m", "\(memorySize >> 20)M",
        "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-bios", trampoline,
        "-device", "loader,file=\(directory)/low.bin,addr=0,force-raw=on",
        "-device", "loader,file=\(directory)/high.bin,addr=0x100000,force-raw=on",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]
    let output = Pipe()
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = output
    process.standardError = FileHandle(forWritingAtPath: "\(directory)/stderr")
    try process.run()
    let bytes = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: bytes, as: UTF8.self)
    let errors = (try? String(contentsOfFile: "\(directory)/stderr", encoding: .utf8)) ?? ""
    return QEMURun(
        status: process.terminationStatus, console: ProbeConsole(parsing: text), standardOutput: text,
        standardError: errors)
}

// MARK: - Running with the host live in the loop (runtime copy-on-write)

/// A copy-on-write resolution the host made while QEMU ran: `nil` when the page was not copy-on-write.
typealias Resolution = (virtualAddress: UInt64, from: UInt64, to: UInt64)

struct LiveQEMURun {
    var run: QEMURun
    /// One entry per `C` line, in order: what ``BootImage/resolveCopyOnWrite(at:)`` returned.
    var resolutions: [Resolution?]
}

/// Where shared guest RAM files go: /dev/shm (tmpfs) when there is one.
func sharedRAMPath() -> String {
    let name = "microvm-tests-\(getpid())-ram-\(UInt64.random(in: 0...UInt64.max))"
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory), isDirectory.boolValue {
        return "/dev/shm/" + name
    }
    return temporaryPath(name)
}

/// Boots `image`, whose RAM must be the shared file at `ramPath` (``GuestMemory/init(sharedFile:size:)``),
/// with QEMU running that very file as its RAM (`memory-backend-file`, `share=on`), and stays in the loop:
/// QEMU's serial is the test's pipes (`-serial stdio`); on each `C <va>` line the host resolves
/// copy-on-write on the live tables in the shared RAM and answers one byte on QEMU's stdin, `0` resolved or
/// `1` not copy-on-write (docs/layout.md, console mode with boot-info flag bit 1). No loader files: the
/// guest sees the host's bytes directly.
func runOnQEMULive(_ image: BootImage, ramPath: String, seconds: Int = 20) throws -> LiveQEMURun {
    let architecture = image.configuration.architecture
    let memorySize = image.configuration.memorySize
    precondition(memorySize & 0xF_FFFF == 0 && memorySize > 0x10_0000, "RAM must be whole MiB above 1 MiB")
    let qemu = architecture == .amd64 ? qemuX86_64! : qemuI386!
    let trampoline = "\(packageRoot)/Guests/qemu/\(architecture == .amd64 ? "tramp64" : "tramp32").bin"
    let errorPath = temporaryPath("qemu-stderr-\(UInt64.random(in: 0...UInt64.max))")
    _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errorPath) }

    let process = Process()
    process.executableURL = URL(fileURLWithPath: executableOnPath("timeout")!)
    process.arguments = [
        "-s", "KILL", "\(seconds)", qemu,
        "-M", "pc,memory-backend=ram0", "-cpu", "max", "-m", "\(memorySize >> 20)M",
        "-object", "memory-backend-file,id=ram0,size=\(memorySize),mem-path=\(ramPath),share=on",
        "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-bios", trampoline,
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = FileHandle(forWritingAtPath: errorPath)
    // An answer to a QEMU that already died must fail the write, not kill the test process.
    signal(SIGPIPE, SIG_IGN)
    try process.run()

    var text: [UInt8] = []
    var line: [UInt8] = []
    var resolutions: [Resolution?] = []
    while true {
        let chunk = output.fileHandleForReading.availableData
        if chunk.isEmpty { break }  // EOF: QEMU (and timeout) exited
        for byte in chunk {
            text.append(byte)
            guard byte == UInt8(ascii: "\n") else {
                line.append(byte)
                continue
            }
            let fields = String(decoding: line, as: UTF8.self).split(separator: " ")
            line.removeAll()
            guard fields.count == 2, fields[0] == "C", let va = UInt64(fields[1], radix: 16) else { continue }
            let resolution = image.resolveCopyOnWrite(at: va)
            resolutions.append(resolution)
            try? input.fileHandleForWriting.write(contentsOf: Data([UInt8(ascii: resolution == nil ? "1" : "0")]))
        }
    }
    try? input.fileHandleForWriting.close()
    process.waitUntilExit()
    let standardOutput = String(decoding: text, as: UTF8.self)
    let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
    return LiveQEMURun(
        run: QEMURun(
            status: process.terminationStatus, console: ProbeConsole(parsing: standardOutput),
            standardOutput: standardOutput, standardError: errors),
        resolutions: resolutions)
}

// MARK: - Scenarios: mappings, memory contents, probes and what each must report

/// The qword the tests write at 8-aligned physical address `pa` (distinct for every address).
private func patternQword(_ pa: UInt64) -> UInt64 { (pa &* 0x9E37_79B9_7F4A_7C15) ^ 0x0F1E_2D3C_4B5A_6978 }

/// The `size` bytes of the pattern at `pa`, little-endian (what a read of the untouched pattern returns).
private func pattern(_ pa: UInt64, _ size: Int) -> UInt64 {
    var value: UInt64 = 0
    for k in 0..<UInt64(size) {
        let address = pa + k
        let byte = (patternQword(address & ~7) >> ((address & 7) * 8)) & 0xFF
        value |= byte << (k * 8)
    }
    return value
}

/// What one probe must report.
private enum Expectation {
    /// Success; a read reports `value`, every other op 0.
    case ok(UInt64 = 0)
    /// #PF with `error`; CR2 the probed address and RIP the access slot (or the address for an execute)
    /// unless given.
    case pageFault(error: UInt64, cr2: UInt64? = nil, rip: UInt64? = nil)
    /// An op or size outside the contract: outcome 2, op, size.
    case invalid
}

private struct ProbeCase {
    var probe: Probe
    var expectation: Expectation
    init(_ probe: Probe, _ expectation: Expectation) {
        self.probe = probe
        self.expectation = expectation
    }
}

/// Page-fault error code bits (SDM Vol. 3A §4.7).
private let errorPresent: UInt64 = 1 << 0
private let errorWrite: UInt64 = 1 << 1
private let errorFetch: UInt64 = 1 << 4

private struct Scenario {
    var architecture: Architecture
    var memorySize: UInt64
    var allowedLeafSizes: AllowedLeafSizes
    var mappings: [Mapping]
    /// Physical ranges filled with ``pattern(_:_:)`` before boot.
    var patterned: [(base: UInt64, length: UInt64)]
    /// Physical addresses of a `ret` (0xC3) for execute probes.
    var returns: [UInt64]
    var cases: [ProbeCase]

    var loadAddress: UInt64 { Layout.defaultLoadAddress }

    /// The RIP / EIP of a fault in the probe guest's access slot for `probe` (Guests/probe64.S: slot k at
    /// load + 0x10 * (k + 1)); `secondHalf` for the i686 8-byte slots' access at va + 4 (slot + 2).
    func slotAddress(_ probe: Probe, secondHalf: Bool = false) -> UInt64 {
        let log2Size = UInt64(probe.size.trailingZeroBitCount)
        let slot: UInt64 =
            switch probe.operation {
            case .read: log2Size
            case .write: 4 + log2Size
            case .execute: 8
            case .invalidate: 9
            }
        return loadAddress + 0x10 * (slot + 1) + (secondHalf ? 2 : 0)
    }

    /// The six numbers probe `index` must report, from the hand-written expectation.
    func expectedReport(_ index: Int) -> [UInt64] {
        let probe = cases[index].probe
        switch cases[index].expectation {
        case .ok(let value):
            return [UInt64(index), 0, value, 0, 0, 0]
        case .pageFault(let error, let cr2, let rip):
            let defaultRIP = probe.operation == .execute ? probe.virtualAddress : slotAddress(probe)
            return [UInt64(index), 1, 14, error, cr2 ?? probe.virtualAddress, rip ?? defaultRIP]
        case .invalid:
            return [UInt64(index), 2, UInt64(probe.operation.rawValue), UInt64(probe.size), 0, 0]
        }
    }

    /// Builds the boot image: the probe guest, the mappings, the pattern, the `ret`s and the probe list.
    func makeImage() throws -> BootImage {
        var configuration = MachineConfiguration(
            architecture: architecture, image: try guest(architecture == .amd64 ? "probe64" : "probe32"))
        configuration.memorySize = memorySize
        configuration.extraMappings = mappings
        let image = try BootImage(configuration: configuration, allowedLeafSizes: allowedLeafSizes)
        try fill(image.memory)
        try image.setProbes(cases.map(\.probe), flags: .reportOnConsole)
        return image
    }

    func fill(_ memory: GuestMemory) throws {
        for range in patterned {
            for pa in stride(from: range.base, to: range.base + range.length, by: 8) {
                try #require(memory.store(patternQword(pa), at: pa))
            }
        }
        for pa in returns { try #require(memory.store(UInt8(0xC3), at: pa)) }
    }

    /// What the engine predicts each probe reports: walk the live tables with `lookup` for every access,
    /// decide ok or fault from the leaf's permissions exactly as the CPU must, and model the reads and
    /// writes on a copy of RAM. Independent of the hand-written expectations.
    func predictedReports(_ image: BootImage) throws -> [[UInt64]] {
        var written: [UInt64: UInt8] = [:]
        func byte(_ pa: UInt64) -> UInt8 { written[pa] ?? image.memory.load(UInt8.self, at: pa) ?? 0xFF }
        var reports: [[UInt64]] = []
        for (index, probe) in cases.map(\.probe).enumerated() {
            let i = UInt64(index)
            let va = architecture == .i686 ? probe.virtualAddress & 0xFFFF_FFFF : probe.virtualAddress
            // The guest's accesses: i686 splits 8 bytes into two 4-byte accesses at va and va + 4.
            let parts: [(va: UInt64, size: Int, secondHalf: Bool)] =
                architecture == .i686 && probe.size == 8 && probe.operation != .execute
                    && probe.operation != .invalidate
                ? [(va, 4, false), ((va + 4) & 0xFFFF_FFFF, 4, true)]
                : [(va, Int(probe.size), false)]
            var report: [UInt64]? = nil
            var value: UInt64 = 0
            switch probe.operation {
            case .read, .write:
                guard [1, 2, 4, 8].contains(probe.size) else {
                    reports.append([i, 2, UInt64(probe.operation.rawValue), UInt64(probe.size), 0, 0])
                    continue
                }
                for (partIndex, part) in parts.enumerated() {
                    let translation = try image.addressSpace.lookup(part.va)
                    #expect(
                        translation == nil || translation!.length >= UInt64(part.size),
                        "probe \(index): the scenario must not cross a leaf in one access")
                    let write = probe.operation == .write
                    guard let translation, !write || translation.kind.isWritable else {
                        let error = (translation == nil ? 0 : errorPresent) | (write ? errorWrite : 0)
                        report = [i, 1, 14, error, part.va, slotAddress(probe, secondHalf: part.secondHalf)]
                        break
                    }
                    for k in 0..<part.size {
                        let pa = translation.physicalAddress + UInt64(k)
                        let shift = UInt64(partIndex * 4 + k) * 8
                        if write {
                            written[pa] = UInt8(truncatingIfNeeded: probe.value >> shift)
                        } else {
                            value |= UInt64(byte(pa)) << shift
                        }
                    }
                }
                if probe.operation == .write { value = 0 }
            case .execute:
                let translation = try image.addressSpace.lookup(va)
                let fetch = architecture == .amd64 ? errorFetch : 0  // I/D is reported only with NXE
                if translation == nil {
                    report = [i, 1, 14, fetch, va, va]
                } else if !translation!.kind.isExecutable && architecture == .amd64 {
                    report = [i, 1, 14, errorPresent | fetch, va, va]
                } else {
                    #expect(byte(translation!.physicalAddress) == 0xC3, "probe \(index): no ret at the target")
                }
            case .invalidate:
                break
            }
            reports.append(report ?? [i, 0, value, 0, 0, 0])
        }
        return reports
    }

    /// Boots the scenario under QEMU and checks every report, both ways.
    func check() throws {
        let image = try makeImage()
        let predicted = try predictedReports(image)
        let run = try runOnQEMU(image)
        let console = run.console
        #expect(run.status == 1, "QEMU status \(run.status); stderr: \(run.standardError)")
        #expect(console.done, "no D line; output:\n\(run.standardOutput)")
        #expect(console.fatal == nil)
        #expect(console.otherLines.isEmpty, "unexpected output: \(console.otherLines)")
        #expect(console.reports.count == cases.count, "output:\n\(run.standardOutput)")
        for index in cases.indices {
            let got = index < console.reports.count ? console.reports[index] : []
            let probe = cases[index].probe
            let what = "probe \(index): \(probe.operation) \(probe.size) at \(hexString(probe.virtualAddress))"
            #expect(got.map(hexString) == expectedReport(index).map(hexString), "\(what): expected by hand")
            #expect(got.map(hexString) == predicted[index].map(hexString), "\(what): predicted by the engine")
        }
    }
}

private func hexString(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

private extension Probe {
    static func read(_ va: UInt64, _ size: UInt32) -> Probe { Probe(.read, va, size: size) }
    static func write(_ va: UInt64, _ size: UInt32, _ value: UInt64) -> Probe {
        Probe(.write, va, size: size, value: value)
    }
    static func execute(_ va: UInt64) -> Probe { Probe(.execute, va, size: 0) }
    static func invalidate(_ va: UInt64) -> Probe { Probe(.invalidate, va, size: 0) }
}

/// The first `count` bytes of a guest binary as a little-endian number.
private func leadingBytes(_ name: String, _ count: Int) throws -> UInt64 {
    try guest(name).prefix(count).enumerated().reduce(0) { $0 | UInt64($1.element) << (UInt64($1.offset) * 8) }
}

// MARK: - The scenarios

private enum Scenarios {
    /// i686 with 4 KiB leaves (or, with `large`, the same probes over tables where 4 MiB leaves are allowed:
    /// the small mappings still get 4 KiB leaves, the identity map of RAM gets 4 MiB ones where aligned).
    static func i686Small() throws -> Scenario {
        let image = try leadingBytes("probe32", 4)
        return Scenario(
            architecture: .i686, memorySize: 16 << 20, allowedLeafSizes: [],
            mappings: [
                Mapping(physicalBase: 0x20_0000, virtualBase: 0xC000_0000, length: 0x2000, kind: .readWrite),
                Mapping(physicalBase: 0x20_0000, virtualBase: 0xC010_0000, length: 0x1000, kind: .readWrite),  // alias
                Mapping(physicalBase: 0x30_0000, virtualBase: 0x4000_0000, length: 0x1000, kind: .readOnly),
                Mapping(physicalBase: 0x30_1000, virtualBase: 0x4000_1000, length: 0x1000, kind: .readExecute),
                Mapping(physicalBase: 0x30_2000, virtualBase: 0xFFFF_F000, length: 0x1000, kind: .readWrite),  // top page
            ],
            patterned: [(0x20_0000, 0x2000), (0x30_0000, 0x1000), (0x30_2000, 0x1000), (0x50_0000, 0x1000)],
            returns: [0x30_1000],
            cases: [
                ProbeCase(.read(0xC000_0000, 8), .ok(pattern(0x20_0000, 8))),  // high address, VA != PA
                ProbeCase(.read(0xC000_0FFC, 4), .ok(pattern(0x20_0FFC, 4))),
                ProbeCase(.read(0xC000_1003, 1), .ok(pattern(0x20_1003, 1))),  // second page
                ProbeCase(.read(0xC010_0010, 2), .ok(pattern(0x20_0010, 2))),  // through the alias
                ProbeCase(.write(0xC000_0020, 4, 0xDEAD_BEEF), .ok()),
                ProbeCase(.read(0xC010_0020, 4), .ok(0xDEAD_BEEF)),  // the alias sees the write
                ProbeCase(.write(0xC010_0040, 8, 0x0123_4567_89AB_CDEF), .ok()),
                ProbeCase(.read(0xC000_0040, 8), .ok(0x0123_4567_89AB_CDEF)),  // and the other way round
                ProbeCase(.write(0xC000_0021, 1, 0x77), .ok()),
                ProbeCase(.read(0xC010_0020, 4), .ok(0xDEAD_77EF)),
                ProbeCase(.write(0xC000_0FFE, 2, 0xA55A), .ok()),
                ProbeCase(.read(0xC010_0FFE, 2), .ok(0xA55A)),
                ProbeCase(.read(0x4000_0000, 4), .ok(pattern(0x30_0000, 4))),  // read-only is readable
                ProbeCase(.write(0x4000_0010, 4, 1), .pageFault(error: errorPresent | errorWrite)),
                ProbeCase(.read(0x4000_0010, 4), .ok(pattern(0x30_0010, 4))),  // the write did not land
                ProbeCase(.read(0x5000_0000, 4), .pageFault(error: 0)),  // unmapped
                ProbeCase(.write(0x5000_0004, 4, 1), .pageFault(error: errorWrite)),
                ProbeCase(.read(0x10, 1), .pageFault(error: 0)),  // page 0
                ProbeCase(.execute(0x4000_1000), .ok()),
                ProbeCase(.execute(0x5000_0000), .pageFault(error: 0)),  // no NX on i686: no I/D bit either
                ProbeCase(.invalidate(0xC000_0000), .ok()),
                ProbeCase(.read(0xC000_0020, 4), .ok(0xDEAD_77EF)),  // after invlpg
                ProbeCase(.read(0xFFFF_F000, 4), .ok(pattern(0x30_2000, 4))),
                ProbeCase(.read(0xFFFF_FFF8, 8), .ok(pattern(0x30_2FF8, 8))),  // the last 8 bytes of the space
                // Two 4-byte reads: the first (0xC0001FFC) succeeds, the second (0xC0002000) faults at slot + 2.
                ProbeCase(.read(0xC000_1FFC, 8), .pageFault(error: 0, cr2: 0xC000_2000, rip: 0x10_0042)),
                ProbeCase(.read(0x50_0000, 4), .ok(pattern(0x50_0000, 4))),  // identity-mapped RAM
                ProbeCase(.write(0x50_0000, 4, 0x600D_F00D), .ok()),
                ProbeCase(.read(0x50_0000, 4), .ok(0x600D_F00D)),
                ProbeCase(.read(0x10_0000, 4), .ok(image)),  // the guest's own first bytes
                ProbeCase(Probe(.write, 0xC000_0000, size: 3, value: 0), .invalid),
            ])
    }

    /// i686 with 4 MiB leaves: 4 MiB-aligned mappings, so every one of them is a single PSE leaf.
    static func i686Large() -> Scenario {
        Scenario(
            architecture: .i686, memorySize: 16 << 20, allowedLeafSizes: [.size4M],
            mappings: [
                Mapping(physicalBase: 0x40_0000, virtualBase: 0xC000_0000, length: 4 << 20, kind: .readWrite),
                Mapping(physicalBase: 0x40_0000, virtualBase: 0xC080_0000, length: 4 << 20, kind: .readWrite),  // alias
                Mapping(physicalBase: 0x80_0000, virtualBase: 0x4000_0000, length: 4 << 20, kind: .readOnly),
                Mapping(physicalBase: 0x40_0000, virtualBase: 0xFFC0_0000, length: 4 << 20, kind: .readExecute),
            ],
            patterned: [(0x40_0000, 0x1000), (0x7F_F000, 0x1000), (0x80_0000, 0x1000), (0xBF_F000, 0x1000)],
            returns: [0x5F_F000],
            cases: [
                ProbeCase(.read(0xC000_0000, 8), .ok(pattern(0x40_0000, 8))),
                ProbeCase(.read(0xC03F_FFFC, 4), .ok(pattern(0x7F_FFFC, 4))),  // last dword of the leaf
                ProbeCase(.read(0xC080_0008, 8), .ok(pattern(0x40_0008, 8))),  // alias
                ProbeCase(.write(0xC000_0100, 4, 0x1234_5678), .ok()),
                ProbeCase(.read(0xC080_0100, 4), .ok(0x1234_5678)),
                ProbeCase(.read(0xFFC0_0100, 4), .ok(0x1234_5678)),
                ProbeCase(.read(0x40_0100, 4), .ok(0x1234_5678)),  // identity map of RAM, also a 4 MiB leaf
                ProbeCase(.write(0x40_0200, 8, 0xFEDC_BA98_7654_3210), .ok()),
                ProbeCase(.read(0xC000_0200, 8), .ok(0xFEDC_BA98_7654_3210)),
                ProbeCase(.read(0x4000_0000, 4), .ok(pattern(0x80_0000, 4))),
                ProbeCase(.read(0x403F_FFFC, 4), .ok(pattern(0xBF_FFFC, 4))),
                ProbeCase(.write(0x403F_FFF0, 4, 1), .pageFault(error: errorPresent | errorWrite)),
                ProbeCase(.write(0xFFC0_0000, 1, 1), .pageFault(error: errorPresent | errorWrite)),
                ProbeCase(.execute(0xFFDF_F000), .ok()),
                ProbeCase(.read(0x5000_0000, 4), .pageFault(error: 0)),
                ProbeCase(.read(0xC040_0000, 4), .pageFault(error: 0)),  // right after the first leaf
                ProbeCase(.invalidate(0xC000_0000), .ok()),
                ProbeCase(.read(0xC000_0100, 4), .ok(0x1234_5678)),
                ProbeCase(.read(0xFFFF_FFF8, 8), .ok(pattern(0x7F_FFF8, 8))),
            ])
    }

    /// amd64 with 1 GiB leaves (or, with `allowed` = [.size2M], the same mappings split into 2 MiB leaves:
    /// that variant also runs on KVM here).
    static func amd64Huge(allowed: AllowedLeafSizes = [.size2M, .size1G]) throws -> Scenario {
        let image = try leadingBytes("probe64", 8)
        let v1: UInt64 = 0x1122_3344_5566_7788
        return Scenario(
            architecture: .amd64, memorySize: 32 << 20, allowedLeafSizes: allowed,
            mappings: [
                Mapping(physicalBase: 0, virtualBase: 0xFFFF_8000_0000_0000, length: 1 << 30, kind: .readWrite),
                Mapping(physicalBase: 0, virtualBase: 0x1_0000_0000, length: 1 << 30, kind: .readWrite),  // above 4 GiB
                Mapping(physicalBase: 0, virtualBase: 0x4000_0000, length: 1 << 30, kind: .readOnly),
                Mapping(physicalBase: 0, virtualBase: 0x8000_0000, length: 1 << 30, kind: .readExecute),
                Mapping(physicalBase: 0, virtualBase: 0xFFFF_FFFF_C000_0000, length: 1 << 30, kind: .readWriteExecute),
            ],
            patterned: [(0x20_0000, 0x1000), (0x40_0000, 0x1000)],
            returns: [0x30_0000],
            cases: [
                ProbeCase(.read(0xFFFF_8000_0020_0000, 8), .ok(pattern(0x20_0000, 8))),  // upper half
                ProbeCase(.read(0x1_0020_0008, 8), .ok(pattern(0x20_0008, 8))),  // above 4 GiB
                ProbeCase(.read(0x4020_0010, 4), .ok(pattern(0x20_0010, 4))),
                ProbeCase(.read(0x8020_0012, 2), .ok(pattern(0x20_0012, 2))),
                ProbeCase(.read(0xFFFF_FFFF_C020_0013, 1), .ok(pattern(0x20_0013, 1))),  // top GiB
                ProbeCase(.write(0xFFFF_8000_0020_0100, 8, v1), .ok()),
                ProbeCase(.read(0x1_0020_0100, 8), .ok(v1)),  // aliases see the write
                ProbeCase(.read(0x4020_0100, 8), .ok(v1)),
                ProbeCase(.read(0x20_0100, 8), .ok(v1)),  // identity map of RAM (2 MiB leaf)
                ProbeCase(.write(0x4020_0108, 8, 1), .pageFault(error: errorPresent | errorWrite)),
                ProbeCase(.read(0x1_0020_0108, 8), .ok(pattern(0x20_0108, 8))),  // the write did not land
                ProbeCase(.write(0x20_0200, 4, 0xCAFE_F00D), .ok()),
                ProbeCase(.read(0xFFFF_FFFF_C020_0200, 4), .ok(0xCAFE_F00D)),
                ProbeCase(.execute(0x8030_0000), .ok()),
                ProbeCase(.execute(0xFFFF_FFFF_C030_0000), .ok()),
                ProbeCase(.execute(0x4030_0000), .pageFault(error: errorPresent | errorFetch)),  // NX
                ProbeCase(.execute(0xFFFF_8000_0030_0000), .pageFault(error: errorPresent | errorFetch)),
                ProbeCase(.execute(0x30_0000), .pageFault(error: errorPresent | errorFetch)),  // RAM is NX
                ProbeCase(.read(0xC000_0000, 8), .pageFault(error: 0)),  // unmapped
                ProbeCase(.write(0xC000_0000, 4, 1), .pageFault(error: errorWrite)),
                ProbeCase(.execute(0x7F_0000_0000), .pageFault(error: errorFetch)),
                ProbeCase(.read(0x10, 8), .pageFault(error: 0)),  // page 0 is unmapped at VA 0 ...
                ProbeCase(.read(0xFFFF_8000_0000_0010, 8), .ok(0)),  // ... but PA 0 is reachable
                ProbeCase(.invalidate(0xFFFF_8000_0020_0000), .ok()),
                ProbeCase(.read(0xFFFF_8000_0020_0100, 8), .ok(v1)),
                ProbeCase(.read(0x1_0010_0000, 8), .ok(image)),  // the guest's own first bytes
                ProbeCase(.read(0xFFFF_8000_0040_0FF8, 8), .ok(pattern(0x40_0FF8, 8))),
                ProbeCase(.write(0x1_0040_0000, 2, 0xBEEF), .ok()),
                ProbeCase(.read(0xFFFF_8000_0040_0000, 2), .ok(0xBEEF)),
                ProbeCase(.read(0xFFFF_8000_0040_0000, 4), .ok(pattern(0x40_0000, 4) & 0xFFFF_0000 | 0xBEEF)),
                ProbeCase(Probe(.read, 0x20_0000, size: 16), .invalid),
            ])
    }
}

// MARK: - Runtime copy-on-write with the host live in the loop

/// A copy-on-write range (one large leaf where allowed) plus a read-only alias of one of its frames, in RAM
/// shared with QEMU; the probes write through the copy-on-write VA (a `C` line the host resolves), read
/// back, read the alias (the old bytes) and a neighbouring page (still the original), and write the alias
/// (a `C` line the host refuses: a plain write fault).
private struct LiveCopyOnWrite {
    var architecture: Architecture
    var memorySize: UInt64
    var allowedLeafSizes: AllowedLeafSizes
    /// The copy-on-write mapping.
    var copyOnWrite: Mapping
    /// Its leaf size as built.
    var leafSize: LeafSize
    /// The page the probes write (inside `copyOnWrite`) and its frame.
    var page: UInt64, frame: UInt64
    /// A read-only 4 KiB mapping of `frame`.
    var alias: UInt64 = 0xC000_0000

    static let value: UInt64 = 0x0BAD_C0FF_EE15_600D
    static let second: UInt32 = 0x5EC0_4D00

    var probes: [Probe] {
        [
            .write(page + 0x10, 8, Self.value),
            .read(page + 0x10, 8),
            .read(page + 0x18, 8),  // the rest of the page came along in the copy
            .read(alias + 0x10, 8),  // the original frame: the old bytes
            .read(page + 0x1010, 8),  // the neighbouring page: still the original, still copy-on-write
            .write(alias + 0x20, 4, 1),  // read-only, not copy-on-write: the host answers 1
            .write(page + 0x20, 4, UInt64(Self.second)),  // the page is writable now: no second C line
            .read(page + 0x1020, 4),
        ]
    }

    var expectedReports: [[UInt64]] {
        let writeSlot4 = Layout.defaultLoadAddress + 0x70  // slot 6 (write of 4): load + 0x10 * 7
        return [
            [0, 0, 0, 0, 0, 0],
            [1, 0, Self.value, 0, 0, 0],
            [2, 0, pattern(frame + 0x18, 8), 0, 0, 0],
            [3, 0, pattern(frame + 0x10, 8), 0, 0, 0],
            [4, 0, pattern(frame + 0x1010, 8), 0, 0, 0],
            [5, 1, 14, errorPresent | errorWrite, alias + 0x20, writeSlot4],
            [6, 0, 0, 0, 0, 0],
            [7, 0, pattern(frame + 0x1020, 4), 0, 0, 0],
        ]
    }

    /// i686 has no NX: every present page reads back executable.
    var writableKind: MappingKind { architecture == .amd64 ? .readWrite : .readWriteExecute }
    var copyOnWriteKind: MappingKind { .copyOnWrite(executable: architecture == .i686) }

    func check() throws {
        let ramPath = sharedRAMPath()
        defer { unlink(ramPath) }
        let memory = try GuestMemory(sharedFile: ramPath, size: memorySize)
        var configuration = MachineConfiguration(
            architecture: architecture, image: try guest(architecture == .amd64 ? "probe64" : "probe32"))
        configuration.memorySize = memorySize
        configuration.extraMappings = [
            copyOnWrite,
            Mapping(physicalBase: frame, virtualBase: alias, length: 0x1000, kind: .readOnly),
        ]
        let image = try BootImage(configuration: configuration, allowedLeafSizes: allowedLeafSizes, memory: memory)
        let before = try #require(try image.addressSpace.lookup(page))
        #expect(before.physicalAddress == frame && before.kind == copyOnWriteKind && before.leafSize == leafSize)
        for pa in stride(from: frame, to: frame + 0x2000, by: 8) {
            try #require(memory.store(patternQword(pa), at: pa))
        }
        try image.setProbes(probes, flags: [.reportOnConsole, .hostAnswersOnConsole])

        let live = try runOnQEMULive(image, ramPath: ramPath)
        let run = live.run
        #expect(run.status == 1, "QEMU status \(run.status); stderr: \(run.standardError)")
        #expect(run.console.done, "no D line; output:\n\(run.standardOutput)")
        #expect(run.console.fatal == nil)
        #expect(run.console.otherLines.isEmpty, "unexpected output: \(run.console.otherLines)")
        #expect(run.console.copyOnWriteRequests.map(hexString) == [page + 0x10, alias + 0x20].map(hexString))
        #expect(
            run.console.reports.map { $0.map(hexString) } == expectedReports.map { $0.map(hexString) },
            "output:\n\(run.standardOutput)")
        try #require(live.resolutions.count == 2, "output:\n\(run.standardOutput)")
        #expect(live.resolutions[1] == nil)
        let resolution = try #require(live.resolutions[0])
        #expect(resolution.virtualAddress == page && resolution.from == frame)
        let to = resolution.to
        #expect(to >= image.arenaBase - 0x4_0000 && to < image.arenaBase, "a scratch frame right below the arena")

        // The shared RAM after QEMU exited: the original frame is unchanged, the copy holds the writes.
        #expect(memory.load(UInt64.self, at: frame + 0x10) == patternQword(frame + 0x10))
        #expect(memory.load(UInt32.self, at: frame + 0x20) == UInt32(truncatingIfNeeded: patternQword(frame + 0x20)))
        #expect(memory.load(UInt64.self, at: to + 0x10) == Self.value)
        #expect(memory.load(UInt32.self, at: to + 0x20) == Self.second)
        #expect(memory.load(UInt64.self, at: to + 0x18) == patternQword(frame + 0x18))
        #expect(memory.read(at: to + 0x28, count: 0xFD8) == memory.read(at: frame + 0x28, count: 0xFD8))

        // The live tables: the page is writable at the copy in a 4 KiB leaf (a large leaf was split), its
        // neighbour still copy-on-write at the original frame.
        let after = try #require(try image.addressSpace.lookup(page + 0x10))
        #expect(after.physicalAddress == to + 0x10 && after.kind == writableKind && after.leafSize == .size4K)
        let neighbour = try #require(try image.addressSpace.lookup(page + 0x1000))
        #expect(neighbour.physicalAddress == frame + 0x1000 && neighbour.kind == copyOnWriteKind)
        #expect(neighbour.leafSize == .size4K)
        let aliasAfter = try #require(try image.addressSpace.lookup(alias))
        #expect(aliasAfter.physicalAddress == frame && !aliasAfter.kind.isWritable)

        // The dump shows the remap.
        let digits = architecture == .amd64 ? 16 : 8
        func address(_ value: UInt64) -> String {
            let text = String(value, radix: 16)
            return "0x" + String(repeating: "0", count: digits - text.count) + text
        }
        let dump = try image.addressSpace.dump()
        let remapped = "\(address(page))-\(address(page + 0xFFF)) -> \(address(to))-\(address(to + 0xFFF))"
        #expect(dump.contains(remapped), "dump:\n\(dump)")
    }
}

// MARK: - The tests

@Suite("QEMU oracle: the probe guests on an emulated MMU", .enabled(if: qemuUsable, qemuReason))
struct QEMUOracleTests {
    @Test("the trampolines and the probe guests are built")
    func binaries() throws {
        for name in ["qemu/tramp32", "qemu/tramp64"] { #expect(try guest(name).count == 0x1_0000) }
        #expect(try guest("probe64").count > 0)
        #expect(try guest("probe32").count > 0)
    }

    @Test("i686, 4 KiB leaves: reads, writes, aliases, high addresses, faults")
    func i686SmallLeaves() throws {
        let scenario = try Scenarios.i686Small()
        let image = try scenario.makeImage()
        #expect(!image.addressSpace.requiresPageSizeExtension)
        for va: UInt64 in [0xC000_0000, 0xC010_0000, 0x4000_0000, 0xFFFF_F000, 0x50_0000] {
            #expect(try image.addressSpace.lookup(va)?.leafSize == .size4K)
        }
        try scenario.check()
    }

    @Test("i686, 4 MiB leaves (CR4.PSE)")
    func i686LargeLeaves() throws {
        let scenario = Scenarios.i686Large()
        let image = try scenario.makeImage()
        #expect(image.addressSpace.requiresPageSizeExtension)
        for va: UInt64 in [0xC000_0000, 0xC080_0000, 0x4000_0000, 0xFFC0_0000, 0x40_0000] {
            #expect(try image.addressSpace.lookup(va)?.leafSize == .size4M, "\(hexString(va))")
        }
        try scenario.check()
    }

    @Test("amd64, 1 GiB leaves: upper half, above 4 GiB, aliases, NX, faults")
    func amd64GigabyteLeaves() throws {
        let scenario = try Scenarios.amd64Huge()
        let image = try scenario.makeImage()
        for va: UInt64 in [0xFFFF_8000_0000_0000, 0x1_0000_0000, 0x4000_0000, 0x8000_0000, 0xFFFF_FFFF_C000_0000] {
            #expect(try image.addressSpace.lookup(va)?.leafSize == .size1G, "\(hexString(va))")
        }
        #expect(try image.addressSpace.lookup(0x20_0000)?.leafSize == .size2M)
        try scenario.check()
    }

    @Test("amd64, the same mappings in 2 MiB leaves")
    func amd64TwoMegabyteLeaves() throws {
        let scenario = try Scenarios.amd64Huge(allowed: [.size2M])
        let image = try scenario.makeImage()
        #expect(try image.addressSpace.lookup(0xFFFF_8000_0000_0000)?.leafSize == .size2M)
        try scenario.check()
    }

    @Test("an exception outside a probe is fatal: an F line, then QEMU status 3")
    func fatalOutsideProbe() throws {
        var scenario = try Scenarios.amd64Huge()
        scenario.cases = [ProbeCase(.read(0x20_0000, 8), .ok(pattern(0x20_0000, 8)))]
        let image = try scenario.makeImage()
        // Point the probe list at an unmapped address: the runtime's own read of probe 0 faults.
        #expect(image.memory.store(UInt64(0xC000_0000), at: Layout.bootInfoAddress + 64))
        let run = try runOnQEMU(image)
        #expect(run.status == 3, "stderr: \(run.standardError)")
        #expect(run.console.reports.isEmpty)
        #expect(!run.console.done)
        let fatal = try #require(run.console.fatal, "output:\n\(run.standardOutput)")
        #expect(fatal[0] == 14 && fatal[1] == 0 && fatal[2] == 0xC000_0000)
        #expect(fatal[3] > scenario.loadAddress && fatal[3] < scenario.loadAddress + 0x1000)
    }

    @Test("i686: an exception outside a probe is fatal too")
    func fatalOutsideProbe32() throws {
        var scenario = try Scenarios.i686Small()
        scenario.cases = []
        let image = try scenario.makeImage()
        #expect(image.memory.store(UInt64(0x5000_0000), at: Layout.bootInfoAddress + 64))
        #expect(image.memory.store(UInt32(1), at: Layout.bootInfoAddress + 72))
        let run = try runOnQEMU(image)
        #expect(run.status == 3, "stderr: \(run.standardError)")
        let fatal = try #require(run.console.fatal, "output:\n\(run.standardOutput)")
        #expect(fatal[0] == 14 && fatal[1] == 0 && fatal[2] == 0x5000_0000)
    }

    @Test("tramp32 enters at any load address; tramp64 needs 0x100000 and says so")
    func loadAddresses() throws {
        var configuration = MachineConfiguration(architecture: .i686, image: try guest("probe32"))
        configuration.loadAddress = 0x20_0000
        let image32 = try BootImage(configuration: configuration, allowedLeafSizes: [])
        #expect(image32.memory.store(UInt64(0x0102_0304_0506_0708), at: 0x30_0000))
        try image32.setProbes([.read(0x30_0000, 8), .read(0x50_0000_0000, 4)], flags: .reportOnConsole)
        let run32 = try runOnQEMU(image32)
        #expect(run32.status == 1, "stderr: \(run32.standardError)")
        #expect(run32.console.done)
        // The address is truncated to 32 bits (0x0): page 0; the read-4 slot moved with the image.
        #expect(run32.console.reports == [[0, 0, 0x0102_0304_0506_0708, 0, 0, 0], [1, 1, 14, 0, 0, 0x20_0030]])

        configuration = MachineConfiguration(architecture: .amd64, image: try guest("probe64"))
        configuration.loadAddress = 0x20_0000
        let image64 = try BootImage(configuration: configuration, allowedLeafSizes: [.size2M])
        try image64.setProbes([], flags: .reportOnConsole)
        let run64 = try runOnQEMU(image64)
        #expect(run64.status == 255)
        #expect(run64.standardOutput == "tramp64: the load address must be 0x100000\n")
    }

    @Test("runtime copy-on-write, host live on the console: i686, 4 KiB leaves")
    func liveCopyOnWriteI686SmallLeaves() throws {
        try LiveCopyOnWrite(
            architecture: .i686, memorySize: 16 << 20, allowedLeafSizes: [],
            copyOnWrite: Mapping(
                physicalBase: 0x40_0000, virtualBase: 0x4000_0000, length: 4 << 20,
                kind: .copyOnWrite(executable: false)),
            leafSize: .size4K, page: 0x4000_0000, frame: 0x40_0000
        ).check()
    }

    @Test("runtime copy-on-write, host live on the console: i686, a page inside a 4 MiB leaf")
    func liveCopyOnWriteI686LargeLeaf() throws {
        try LiveCopyOnWrite(
            architecture: .i686, memorySize: 16 << 20, allowedLeafSizes: [.size4M],
            copyOnWrite: Mapping(
                physicalBase: 0x40_0000, virtualBase: 0x4000_0000, length: 4 << 20,
                kind: .copyOnWrite(executable: false)),
            leafSize: .size4M, page: 0x4010_0000, frame: 0x50_0000
        ).check()
    }

    @Test("runtime copy-on-write, host live on the console: amd64, a page inside a 1 GiB leaf")
    func liveCopyOnWriteAMD64GigabyteLeaf() throws {
        try LiveCopyOnWrite(
            architecture: .amd64, memorySize: 32 << 20, allowedLeafSizes: [.size2M, .size1G],
            copyOnWrite: Mapping(
                physicalBase: 0, virtualBase: 0x4000_0000, length: 1 << 30, kind: .copyOnWrite(executable: false)),
            leafSize: .size1G, page: 0x4040_0000, frame: 0x40_0000
        ).check()
    }

    @Test(
        "the same probes on KVM and QEMU print the same lines (amd64, 2 MiB leaves)", .enabled(if: kvmUsable, kvmReason)
    )
    func kvmAgreesWithQEMU() throws {
        let scenario = try Scenarios.amd64Huge(allowed: [.size2M])
        var configuration = MachineConfiguration(architecture: .amd64, image: try guest("probe64"))
        configuration.memorySize = scenario.memorySize
        configuration.extraMappings = scenario.mappings
        configuration.console = .capture
        configuration.timeout = .seconds(10)
        let machine = try Machine(configuration: configuration)
        try #require(try machine.addressSpace.lookup(0xFFFF_8000_0000_0000)?.leafSize == .size2M)
        try scenario.fill(machine.memory)
        try machine.image.setProbes(scenario.cases.map(\.probe), flags: .reportOnConsole)
        #expect(try machine.run() == .exited(status: 0))
        let kvmText = String(decoding: machine.consoleOutput, as: UTF8.self)
        let qemu = try runOnQEMU(try scenario.makeImage())
        #expect(kvmText == qemu.standardOutput)
        let console = ProbeConsole(parsing: kvmText)
        #expect(console.done)
        #expect(console.reports == scenario.cases.indices.map(scenario.expectedReport))
    }
}
