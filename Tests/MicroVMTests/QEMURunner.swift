import Foundation
@_spi(Testing) import MicroVM
import Testing

// Finding and running QEMU, the oracle for what this machine's KVM (kvm_pvm) cannot run: i686 paging and
// amd64 1 GiB leaves (design.md §5). A host-built boot image (tables, GDT, boot information, probe list,
// guest) becomes QEMU's RAM (`memory-backend-file`) and is entered through a 64 KiB -bios trampoline
// (Guests/qemu/tramp32.S, tramp64.S) that loads CR3 and turns paging on; QEMU's serial line is this
// process's pipes, and isa-debug-exit on port 0xF4 ends the run.

/// QEMU's system emulators (Debian's qemu-system-x86) and `timeout`, which bounds every run.
enum QEMU {
    static let i386 = executableOnPath("qemu-system-i386")
    static let x86_64 = executableOnPath("qemu-system-x86_64")
    static let timeout = executableOnPath("timeout")
    /// Whether QEMU can run here.
    static let isInstalled = i386 != nil && x86_64 != nil && timeout != nil
    /// `MICROVM_REQUIRE_QEMU=1` (set by scripts/test.sh): tests that need QEMU fail without it instead of
    /// skipping.
    static let isRequired = ProcessInfo.processInfo.environment["MICROVM_REQUIRE_QEMU"] == "1"
    static let missing = "qemu-system-x86 is not installed (apt-get install qemu-system-x86; scripts/test.sh does)"

    /// The path of `name` on PATH or in /usr/bin, if it is an executable file.
    private static func executableOnPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":").map(String.init) + ["/usr/bin"] {
            let candidate = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// Whether suites that need QEMU run: where it is installed, and where it is required (they then fail in
/// ``runOnQEMU(_:sharedRAM:seconds:)`` rather than skip).
let qemuTestsRun = QEMU.isInstalled || QEMU.isRequired
let qemuReason: Comment = "needs qemu-system-x86 (Debian; scripts/test.sh installs it)"

/// A copy-on-write resolution the host made: the page, its original frame, its new frame.
typealias Resolution = (virtualAddress: UInt64, from: UInt64, to: UInt64)

/// What one QEMU run left behind.
struct QEMURun {
    /// QEMU's exit status: isa-debug-exit turns the guest's `out` of V into (V << 1) | 1, so the probe
    /// guest's `D` ends with 1 and its `F` with 3; 124 / 137 mean `timeout` had to stop it.
    var status: Int32
    /// The console, parsed (docs/layout.md, console mode).
    var console: ProbeConsole
    var standardOutput: String
    var standardError: String
    /// One entry per `C` line, in order: what the host's resolution returned (`nil`: it answered `1`).
    var resolutions: [Resolution?]
}

/// Where RAM files go: /dev/shm (tmpfs) when there is one.
func sharedRAMPath() -> String {
    let name = "microvm-tests-\(getpid())-ram-\(UInt64.random(in: 0...UInt64.max))"
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory), isDirectory.boolValue {
        return "/dev/shm/" + name
    }
    return temporaryPath(name)
}

/// Boots `image` under QEMU (`-M pc -cpu max`, the trampoline for its architecture), killing it after
/// `seconds`, and serves the guest's console while it runs.
///
/// - Parameters:
///   - sharedRAM: the file `image`'s RAM lives in (``GuestMemory/init(sharedFile:size:)``). QEMU then runs
///     that very file as its RAM (`share=on`): the host sees the guest's writes and the guest the host's,
///     so on each `C <va> [<error>]` line the host resolves copy-on-write on the live tables and answers one
///     byte on COM1, `0` resolved or `1` not (docs/layout.md, console mode with boot-info flag bit 1).
///     Without it, the image's RAM is copied into a scratch file first, and every `C` line is answered `1`
///     (the host's edits would not reach QEMU's copy).
/// - Returns: the exit status, the console, standard error, and one resolution per `C` line.
func runOnQEMU(_ image: BootImage, sharedRAM: String? = nil, seconds: Int = 20) throws -> QEMURun {
    try #require(QEMU.isInstalled, "\(QEMU.missing)")
    let architecture = image.configuration.architecture
    let memorySize = image.configuration.memorySize
    precondition(memorySize & 0xF_FFFF == 0 && memorySize > 0x10_0000, "RAM must be whole MiB above 1 MiB")
    let qemu = architecture == .amd64 ? QEMU.x86_64! : QEMU.i386!
    let trampoline = "\(packageRoot)/Guests/qemu/\(architecture == .amd64 ? "tramp64" : "tramp32").bin"

    let ramPath = sharedRAM ?? sharedRAMPath()
    if sharedRAM == nil {
        let bytes = try #require(image.memory.read(at: 0, count: Int(memorySize)))
        try Data(bytes).write(to: URL(fileURLWithPath: ramPath))
    }
    defer { if sharedRAM == nil { unlink(ramPath) } }
    let errorPath = temporaryPath("qemu-stderr-\(UInt64.random(in: 0...UInt64.max))")
    _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errorPath) }

    // QEMU's pc machine lays its VGA window and BIOS over [0xA0000, 0x100000) of the file; nothing of the
    // guest contract lives there.
    let process = Process()
    process.executableURL = URL(fileURLWithPath: QEMU.timeout!)
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
            defer { line.removeAll() }
            guard case .copyOnWrite(let request) = ProbeLine(parsing: String(decoding: line, as: UTF8.self)) else {
                continue
            }
            // The error code's U/S bit: a write from CPL 3 may only be resolved on a user page.
            let userAccess = (request.errorCode ?? 0) & 0x4 != 0
            let resolution =
                sharedRAM == nil ? nil : image.resolveCopyOnWrite(at: request.address, userAccess: userAccess)
            resolutions.append(resolution)
            try? input.fileHandleForWriting.write(contentsOf: Data([UInt8(ascii: resolution == nil ? "1" : "0")]))
        }
    }
    try? input.fileHandleForWriting.close()
    process.waitUntilExit()
    let standardOutput = String(decoding: text, as: UTF8.self)
    return QEMURun(
        status: process.terminationStatus, console: ProbeConsole(parsing: standardOutput),
        standardOutput: standardOutput,
        standardError: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "", resolutions: resolutions)
}
