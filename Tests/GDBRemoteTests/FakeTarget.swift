import GDBRemote
import Glibc
import Synchronization

/// A pretend machine for the stub: a register file, sparse 4 KiB pages with holes, breakpoints, and a
/// tiny CPU that understands a handful of real x86 encodings (so gdb's disassembly agrees):
///
/// | bytes | instruction | effect |
/// |---|---|---|
/// | `90` | `nop` | |
/// | `B0 ib` | `mov al, imm8` | |
/// | `48 FF C0` | `inc rax` | |
/// | `88 07` | `mov [rdi], al` | write one byte; `SIGSEGV` if unmapped; triggers write/access watchpoints |
/// | `EB cb` | `jmp rel8` | `EB FE` (`jmp $`) idles until interrupted, at most ``idleWait`` |
/// | `F4` | `hlt` | the machine exits with status AL |
/// | `CC` | `int3` | planted by `Z0`: a software-breakpoint stop at its address (what the machine reports when
/// |      |        | kvm_pvm fails to emulate the `INT3`); unplanted: `SIGTRAP` after it |
/// | other | | `SIGILL`, RIP unchanged |
final class FakeTarget: GDBTarget {
    struct Breakpoint: Hashable {
        var kind: GDBBreakpointKind
        var address: UInt64
        var length: Int
    }

    static let pageSize: UInt64 = 4096

    let architecture: GDBArchitecture
    var registers: GDBRegisterFile
    private(set) var pages: [UInt64: [UInt8]] = [:]
    /// Hardware breakpoints and watchpoints.
    private(set) var breakpoints: Set<Breakpoint> = []
    /// Software breakpoints, planted in memory as INT3.
    private(set) var planted = GDBSoftwareBreakpoints()
    /// How many hardware breakpoints and watchpoints fit (x86: four debug registers).
    var hardwareSlots = 4
    /// Instructions one continue runs at most before reporting SIGINT (keeps fuzzing finite).
    var instructionBudget = 10_000
    /// How long `jmp $` waits for an interrupt before reporting SIGINT anyway.
    var idleWait: Duration = .zero
    /// Called at the start of every resume (tests on other threads learn that the target runs).
    var onResume: (@Sendable () -> Void)?
    /// Thrown by the next resume: the machine failing.
    var resumeError: (any Error)?
    /// Every requirement called, in order ("resume(step)", "kill", ...), for exact-sequence checks.
    private(set) var calls: [String] = []
    private(set) var killed = false
    private(set) var detached = false
    /// Set by the interrupt handler from the watcher thread; consumed by the stop it causes.
    let interruptRequested = InterruptFlag()

    final class InterruptFlag: Sendable {
        private let value = Atomic<Bool>(false)
        func set() { value.store(true, ordering: .sequentiallyConsistent) }
        func take() -> Bool { value.exchange(false, ordering: .sequentiallyConsistent) }
        var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
    }

    init(architecture: GDBArchitecture = .amd64) {
        self.architecture = architecture
        self.registers = GDBRegisterFile(architecture: architecture)
    }

    /// Maps whole zeroed pages covering `address ..< address + count`.
    func map(_ address: UInt64, count: Int) {
        var page = address / Self.pageSize
        let last = (address + UInt64(count) - 1) / Self.pageSize
        while page <= last {
            if pages[page] == nil { pages[page] = Array(repeating: 0, count: Int(Self.pageSize)) }
            page += 1
        }
    }

    /// Maps the pages under `bytes` and stores them.
    func load(_ bytes: [UInt8], at address: UInt64) {
        map(address, count: bytes.count)
        try! poke(address, bytes)
    }

    func byte(at address: UInt64) -> UInt8? {
        pages[address / Self.pageSize]?[Int(address % Self.pageSize)]
    }

    private func poke(_ address: UInt64, _ bytes: [UInt8]) throws(GDBTargetError) {
        for index in bytes.indices {
            let (target, overflow) = address.addingReportingOverflow(UInt64(index))
            guard !overflow, pages[target / Self.pageSize] != nil else { throw .memoryFault(address: target) }
        }
        for (index, byte) in bytes.enumerated() {
            let target = address + UInt64(index)
            pages[target / Self.pageSize]![Int(target % Self.pageSize)] = byte
        }
    }

    // MARK: GDBTarget

    func readRegisters() throws -> GDBRegisterFile {
        calls.append("readRegisters")
        return registers
    }

    func writeRegisters(_ registers: GDBRegisterFile) throws {
        calls.append("writeRegisters")
        self.registers = registers
    }

    func readMemory(at address: UInt64, count: Int) throws -> [UInt8] {
        calls.append("readMemory(\(hex(address)),\(count))")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for index in 0..<count {
            let (target, overflow) = address.addingReportingOverflow(UInt64(index))
            guard !overflow, let byte = byte(at: target) else { throw GDBTargetError.memoryFault(address: target) }
            bytes.append(byte)
        }
        return planted.hiding(bytes, at: address)
    }

    func writeMemory(at address: UInt64, bytes: [UInt8]) throws {
        calls.append("writeMemory(\(hex(address)),\(bytes.count))")
        var kept = planted
        try poke(address, kept.planting(bytes, at: address))
        planted = kept
    }

    func insertBreakpoint(_ kind: GDBBreakpointKind, at address: UInt64, length: Int) throws {
        calls.append("insert(\(kind),\(hex(address)),\(length))")
        if kind == .software {
            try planted.insert(
                at: address,
                reading: { address throws(GDBTargetError) in
                    guard let byte = byte(at: address) else { throw .memoryFault(address: address) }
                    return byte
                },
                writing: { try poke($0, [$1]) })
            return
        }
        let breakpoint = Breakpoint(kind: kind, address: address, length: length)
        guard !breakpoints.contains(breakpoint) else { return }
        guard [1, 2, 4, 8].contains(length), address % UInt64(length) == 0 else {
            throw GDBTargetError.invalidArgument("a debug register covers 1, 2, 4 or 8 aligned bytes")
        }
        guard breakpoints.count < hardwareSlots else { throw GDBTargetError.resourceExhausted }
        breakpoints.insert(breakpoint)
    }

    func removeBreakpoint(_ kind: GDBBreakpointKind, at address: UInt64, length: Int) throws {
        calls.append("remove(\(kind),\(hex(address)),\(length))")
        if kind == .software {
            try planted.remove(at: address) { try poke($0, [$1]) }
            return
        }
        breakpoints.remove(Breakpoint(kind: kind, address: address, length: length))
    }

    func resume(_ mode: GDBResumeMode) throws -> GDBStopReason {
        calls.append("resume(\(mode))")
        onResume?()
        if let resumeError { throw resumeError }
        if mode == .step {
            if takeInterrupt() { return .signal(.interrupt) }
            return execute() ?? .signal(.trap)
        }
        for _ in 0..<instructionBudget {
            if takeInterrupt() { return .signal(.interrupt) }
            let rip = registers[.ip]
            if breakpoints.contains(where: { $0.address == rip && $0.kind == .hardware }) { return .hardwareBreakpoint }
            if byte(at: rip) == 0xEB, byte(at: rip &+ 1) == 0xFE {
                idle()
                if !takeInterrupt() { calls.append("idle timeout") }
                return .signal(.interrupt)
            }
            if let stop = execute() { return stop }
        }
        return .signal(.interrupt)
    }

    func makeInterruptHandler() -> @Sendable () -> Void {
        calls.append("makeInterruptHandler")
        let flag = interruptRequested
        return { flag.set() }
    }

    func detach() {
        calls.append("detach")
        detached = true
        breakpoints.removeAll()
        try? planted.removeAll { try poke($0, [$1]) }
    }

    func kill() {
        calls.append("kill")
        killed = true
    }

    // MARK: The tiny CPU

    /// Consumes a requested interrupt, logging it as "interrupted".
    private func takeInterrupt() -> Bool {
        guard interruptRequested.take() else { return false }
        calls.append("interrupted")
        return true
    }

    /// Waits for the interrupt flag, at most `idleWait`.
    private func idle() {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: idleWait)
        while !interruptRequested.isSet && clock.now < deadline {
            usleep(1000)
        }
    }

    /// Runs the instruction at RIP; returns a stop if it stopped the machine (a step's trap is the caller's).
    private func execute() -> GDBStopReason? {
        let rip = registers[.ip]
        guard let opcode = byte(at: rip) else { return .signal(.segmentationFault) }
        let operand = byte(at: rip &+ 1)
        switch opcode {
        case 0x90:
            registers[.ip] = rip &+ 1
        case 0xB0:
            guard let immediate = operand else { return .signal(.segmentationFault) }
            registers[.ax] = registers[.ax] & ~0xFF | UInt64(immediate)
            registers[.ip] = rip &+ 2
        case 0x48 where operand == 0xFF && byte(at: rip &+ 2) == 0xC0:
            registers[.ax] = registers[.ax] &+ 1
            registers[.ip] = rip &+ 3
        case 0x88 where operand == 0x07:
            let address = registers[.di]
            guard (try? poke(address, [UInt8(truncatingIfNeeded: registers[.ax])])) != nil else {
                return .signal(.segmentationFault)
            }
            registers[.ip] = rip &+ 2
            let hit = breakpoints.first {
                ($0.kind == .writeWatchpoint || $0.kind == .accessWatchpoint) && address >= $0.address
                    && address - $0.address < UInt64($0.length)
            }
            if let hit { return .watchpoint(hit.kind, address: address) }
        case 0xEB:
            guard let displacement = operand else { return .signal(.segmentationFault) }
            registers[.ip] = rip &+ 2 &+ UInt64(bitPattern: Int64(Int8(bitPattern: displacement)))
        case 0xF4:
            return .exited(status: UInt8(truncatingIfNeeded: registers[.ax]))
        case 0xCC:
            if planted.contains(rip) { return .softwareBreakpoint }
            registers[.ip] = rip &+ 1
            return .signal(.trap)
        default:
            return .signal(.illegalInstruction)
        }
        return nil
    }
}

extension FakeTarget {
    /// The program the session tests run, at 0x1000, with RDI = 0x2000 and RSP = 0x2ff0; pages
    /// 0x1000-0x2fff and 0x5000-0x5fff mapped, 0x0-0xfff, 0x3000-0x4fff and everything above 0x6000 not.
    static let program: [UInt8] = [
        0xB0, 0x01,  // 0x1000: mov al, 1
        0x48, 0xFF, 0xC0,  // 0x1002: inc rax
        0x90,  // 0x1005: nop
        0x88, 0x07,  // 0x1006: mov [rdi], al
        0x90,  // 0x1008: nop
        0xF4,  // 0x1009: hlt
    ]

    static func standard(_ architecture: GDBArchitecture = .amd64) -> FakeTarget {
        let target = FakeTarget(architecture: architecture)
        target.map(0x1000, count: 0x2000)
        target.map(0x5000, count: 0x1000)
        target.load(program, at: 0x1000)
        target.registers[.ip] = 0x1000
        target.registers[.di] = 0x2000
        target.registers[.sp] = 0x2FF0
        return target
    }
}

/// A transport fed from a script: each ``receive(maximumCount:)`` returns the next chunk (split to the
/// maximum); each run returns the next entry of ``bytesWhileRunning``, calling the interrupt handler first
/// if it holds an interrupt byte. Output accumulates in ``output``.
final class ScriptedTransport: GDBTransport {
    private var chunks: [[UInt8]]
    var bytesWhileRunning: [[UInt8]] = []
    /// Disconnect during the next run (after the target stopped).
    var disconnectWhileRunning = false
    private(set) var output: [UInt8] = []
    private(set) var runs = 0

    init(chunks: [[UInt8]]) {
        self.chunks = chunks
    }

    /// Each packet framed, one chunk per packet.
    convenience init(packets: [String]) {
        self.init(chunks: packets.map { GDBPacket.framed(Array($0.utf8)) })
    }

    func receive(maximumCount: Int) throws(GDBTransportError) -> [UInt8] {
        guard !chunks.isEmpty else { return [] }
        let chunk = chunks.removeFirst()
        if chunk.count > maximumCount {
            chunks.insert(Array(chunk[maximumCount...]), at: 0)
            return Array(chunk[..<maximumCount])
        }
        return chunk
    }

    func send(_ bytes: [UInt8]) throws(GDBTransportError) {
        output += bytes
    }

    func run(interrupting interrupt: @escaping @Sendable () -> Void, _ body: () -> Void) throws(GDBTransportError)
        -> [UInt8]
    {
        runs += 1
        let arriving = bytesWhileRunning.isEmpty ? [] : bytesWhileRunning.removeFirst()
        if arriving.contains(GDBPacket.interruptByte) { interrupt() }
        body()
        if disconnectWhileRunning { throw .disconnected }
        return arriving
    }
}

/// What the stub sent, split into acks and packets (checksums verified).
enum Sent: Hashable, CustomStringConvertible {
    case ack
    case nack
    case packet(String)
    case corrupt(String)

    var description: String {
        switch self {
        case .ack: "+"
        case .nack: "-"
        case .packet(let payload): "$\(payload)"
        case .corrupt(let rest): "corrupt(\(rest))"
        }
    }

    /// Splits the stub's output; a frame with a wrong checksum becomes ``corrupt(_:)``.
    static func parse(_ output: [UInt8]) -> [Sent] {
        var result: [Sent] = []
        var index = 0
        while index < output.count {
            switch output[index] {
            case UInt8(ascii: "+"):
                result.append(.ack)
                index += 1
            case UInt8(ascii: "-"):
                result.append(.nack)
                index += 1
            case UInt8(ascii: "$"):
                guard let end = output[index...].firstIndex(of: UInt8(ascii: "#")), end + 2 < output.count else {
                    result.append(.corrupt(String(decoding: output[index...], as: UTF8.self)))
                    return result
                }
                let payload = Array(output[(index + 1)..<end])
                let digits = Array(output[(end + 1)...(end + 2)])
                let text = String(decoding: payload, as: UTF8.self)
                result.append(
                    GDBPacket.hexDigits(of: GDBPacket.checksum(payload)) == digits ? .packet(text) : .corrupt(text))
                index = end + 3
            default:
                result.append(.corrupt(String(decoding: output[index...], as: UTF8.self)))
                return result
            }
        }
        return result
    }
}
