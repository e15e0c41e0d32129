import Foundation
@_spi(Testing) import MicroVM
import PageTables
import Testing

// One way of writing a probe scenario and its expectations, for KVM and QEMU alike: the layout, the
// memory, the probes and, for each, the report written out by hand. Running it checks every report
// against that and against the engine-predicted model (ProbeModel.swift).

/// What one probe must report, written by hand.
enum Expectation {
    /// Success; a read reports `value`, every other op 0.
    case ok(UInt64 = 0)
    /// #PF with `error`; CR2 the probed address and RIP the access slot (or the address, for an execute)
    /// unless given.
    case pageFault(error: UInt64, cr2: UInt64? = nil, rip: UInt64? = nil)
    /// An op or size outside the contract: outcome 2, op, size.
    case invalid
    /// #GP(0) in the access slot (`invlpg` at CPL 3), reported with CR2 as the last page fault left it.
    case generalProtection(cr2: UInt64)
}

/// One probe and what it must report.
struct ProbeCase {
    var probe: Probe
    var expectation: Expectation
    init(_ probe: Probe, _ expectation: Expectation) {
        self.probe = probe
        self.expectation = expectation
    }
}

extension Probe {
    static func read(_ va: UInt64, _ size: UInt32) -> Probe { Probe(.read, va, size: size) }
    static func write(_ va: UInt64, _ size: UInt32, _ value: UInt64) -> Probe {
        Probe(.write, va, size: size, value: value)
    }
    static func execute(_ va: UInt64) -> Probe { Probe(.execute, va, size: 0) }
    static func invalidate(_ va: UInt64) -> Probe { Probe(.invalidate, va, size: 0) }
    /// The same probe, run at CPL 3.
    var inUserMode: Probe {
        var probe = self
        probe.userMode = true
        return probe
    }
}

/// A change made by hand to the tables after they are built.
enum TableEdit {
    /// Clears U/S in the entry at `level` on the walk to `va` (amd64: 3 PML4, 2 PDPT, 1 PD; i686: 1 PD),
    /// which must be a present, user-accessible table reference: user mode may then reach nothing below it,
    /// whatever the leaves say (SDM Vol. 3A §4.6: U/S must be 1 at every level for a user access).
    case clearUserAccess(va: UInt64, level: Int)
}

/// Where a scenario runs.
enum ProbePlatform: Equatable {
    /// This machine's KVM (amd64): reports by hypercall, copy-on-write resolved by hypercall 3.
    case kvm
    /// QEMU's software MMU with the host in the loop: reports as console lines, RAM shared with this
    /// process, which resolves copy-on-write on the runtime's `C` lines (boot-info flags 0 and 1).
    case qemu
    /// QEMU with nobody answering (boot-info flag 0 only): a write fault on a copy-on-write page is reported.
    case qemuAlone
}

/// The probe guest over one layout, the bytes it will find, the probes it runs and what each must report.
struct ProbeScenario {
    var architecture: Architecture
    var memorySize: UInt64 = 16 << 20
    /// The large leaves the host may write. On KVM the machine's policy follows: none is `.small`, anything
    /// else `.automatic`, which must then allow exactly these (this host's CPUID decides).
    var leafSizes: AllowedLeafSizes
    var mappings: [Mapping]
    /// Physical ranges filled with ``pattern(_:_:)`` before boot.
    var patterned: [(base: UInt64, length: UInt64)] = []
    /// Qwords stored at physical addresses before boot, after the pattern.
    var qwords: [(address: UInt64, value: UInt64)] = []
    /// Physical addresses of a `ret` (0xC3) for execute probes.
    var returns: [UInt64] = []
    /// Boot-information flags besides the console ones each platform sets (e.g. ``BootInfo/Flags/probesInUserMode``).
    var flags: BootInfo.Flags = []
    /// Changes to the tables by hand, after every mapping and the probe list.
    var tableEdits: [TableEdit] = []
    var cases: [ProbeCase]

    var loadAddress: UInt64 { Layout.defaultLoadAddress }
    var probes: [Probe] { cases.map(\.probe) }

    /// The six numbers probe `index` must report, from the hand-written expectation.
    func expectedReport(_ index: Int) -> [UInt64] {
        let probe = cases[index].probe
        switch cases[index].expectation {
        case .ok(let value):
            return [UInt64(index), 0, value, 0, 0, 0]
        case .pageFault(let error, let cr2, let rip):
            let slot = probe.slotAddress(loadAddress: loadAddress)
            let defaultRIP = probe.operation == .execute ? probe.virtualAddress : slot
            return [UInt64(index), 1, 14, error, cr2 ?? probe.virtualAddress, rip ?? defaultRIP]
        case .invalid:
            return [UInt64(index), 2, UInt64(probe.operation.rawValue), UInt64(probe.size), 0, 0]
        case .generalProtection(let cr2):
            return [UInt64(index), 1, 13, 0, cr2, probe.slotAddress(loadAddress: loadAddress)]
        }
    }

    /// The scenario with only its CPL 3 probes, chosen for the whole run by the boot-information flag
    /// instead of per probe: the expectations stay as they are.
    func everyProbeInUserModeByFlag() -> ProbeScenario {
        var scenario = self
        scenario.flags.insert(.probesInUserMode)
        scenario.cases = cases.filter(\.probe.userMode).map {
            var probe = $0.probe
            probe.userMode = false
            return ProbeCase(probe, $0.expectation)
        }
        return scenario
    }

    /// The machine configuration: the probe guest for the architecture, the RAM and the mappings.
    func configuration() throws -> MachineConfiguration {
        var configuration = MachineConfiguration(
            architecture: architecture, image: try guest(architecture == .amd64 ? "probe64" : "probe32"))
        configuration.memorySize = memorySize
        configuration.extraMappings = mappings
        return configuration
    }

    /// Builds the boot image as QEMU runs it, in `memory` if given, reporting on the console (`consoleFlags`).
    func makeImage(memory: GuestMemory? = nil, consoleFlags: BootInfo.Flags = .reportOnConsole) throws -> BootImage {
        let image = try BootImage(configuration: try configuration(), allowedLeafSizes: leafSizes, memory: memory)
        try prepare(image, flags: flags.union(consoleFlags))
        return image
    }

    /// Builds the machine as KVM runs it: reports by hypercall, unless `consoleFlags` say otherwise.
    func makeMachine(consoleFlags: BootInfo.Flags = []) throws -> Machine {
        var configuration = try configuration()
        configuration.pageSizePolicy = leafSizes.isEmpty ? .small : .automatic
        configuration.console = .capture
        configuration.timeout = .seconds(10)
        let machine = try Machine(configuration: configuration)
        try #require(
            machine.addressSpace.allowedLeafSizes == leafSizes,
            "this host's KVM allows other large leaves (\(machine.addressSpace.allowedLeafSizes.rawValue))")
        try prepare(machine.image, flags: flags.union(consoleFlags))
        return machine
    }

    /// Fills memory, lists the probes, then edits the tables.
    func prepare(_ image: BootImage, flags: BootInfo.Flags) throws {
        try fill(image.memory)
        try image.setProbes(probes, flags: flags)
        for edit in tableEdits { try apply(edit, to: image) }
    }

    func apply(_ edit: TableEdit, to image: BootImage) throws {
        switch edit {
        case .clearUserAccess(let va, let level):
            // The walk the CPU makes: amd64 4 levels of 512 8-byte entries, i686 2 levels of 1024 4-byte ones.
            let amd64 = architecture == .amd64
            let indexBits: UInt64 = amd64 ? 9 : 10
            let memory = image.memory
            var table = image.addressSpace.rootPhysicalAddress
            for current in stride(from: amd64 ? 3 : 1, through: level, by: -1) {
                let index = (va >> (12 + indexBits * UInt64(current))) & ((1 << indexBits) - 1)
                let address = table + index * (amd64 ? 8 : 4)
                let entry =
                    amd64
                    ? try #require(memory.load(UInt64.self, at: address))
                    : UInt64(try #require(memory.load(UInt32.self, at: address)))
                try #require(entry & 0x1 != 0, "no table at level \(current) on the walk to \(hex(va))")
                try #require(entry & 0x80 == 0, "a leaf at level \(current) on the walk to \(hex(va))")
                if current == level {
                    try #require(entry & 0x4 != 0, "U/S is clear already at level \(level) for \(hex(va))")
                    let cleared = entry & ~UInt64(0x4)
                    try #require(
                        amd64
                            ? memory.store(cleared, at: address)
                            : memory.store(UInt32(truncatingIfNeeded: cleared), at: address))
                }
                table = entry & (amd64 ? 0x000F_FFFF_FFFF_F000 : 0xFFFF_F000)
            }
        }
    }

    func fill(_ memory: GuestMemory) throws {
        for range in patterned {
            for pa in stride(from: range.base, to: range.base + range.length, by: 8) {
                try #require(memory.store(patternQword(pa), at: pa))
            }
        }
        for (address, value) in qwords { try #require(memory.store(value, at: address)) }
        for pa in returns { try #require(memory.store(UInt8(0xC3), at: pa)) }
    }

    /// Runs the scenario on `platform` and checks every report against the hand-written expectation and the
    /// engine-predicted model, and that the run ended as the probe guest ends.
    /// - Returns: the run, for checks of its own.
    @discardableResult
    func check(on platform: ProbePlatform, sourceLocation: SourceLocation = #_sourceLocation) throws -> ProbeRun {
        let run: ProbeRun
        let predicted: [[UInt64]]
        switch platform {
        case .kvm:
            let machine = try makeMachine()
            var model = ProbeModel(image: machine.image, resolvesCopyOnWrite: true)
            predicted = try model.reports(for: probes)
            #expect(try machine.run() == .halted, sourceLocation: sourceLocation)
            var reports = machine.reports
            #expect(reports.last == [0xFFFF_FFFF, 0, 0, 0, 0, 0], "no done report", sourceLocation: sourceLocation)
            if !reports.isEmpty { reports.removeLast() }
            run = ProbeRun(
                image: machine.image, reports: reports, machine: machine, qemu: nil,
                resolutions: machine.copyOnWriteResolutions)
        case .qemu, .qemuAlone:
            let answered = platform == .qemu
            let ramPath = sharedRAMPath()
            defer { unlink(ramPath) }
            let memory: GuestMemory? =
                if answered { try GuestMemory(sharedFile: ramPath, size: memorySize) } else { nil }
            let image = try makeImage(
                memory: memory, consoleFlags: answered ? [.reportOnConsole, .hostAnswersOnConsole] : .reportOnConsole)
            var model = ProbeModel(image: image, resolvesCopyOnWrite: answered)
            predicted = try model.reports(for: probes)
            let qemu = try runOnQEMU(image, sharedRAM: answered ? ramPath : nil)
            let console = qemu.console
            #expect(
                qemu.status == 1, "QEMU status \(qemu.status); stderr: \(qemu.standardError)",
                sourceLocation: sourceLocation)
            #expect(console.done, "no D line; output:\n\(qemu.standardOutput)", sourceLocation: sourceLocation)
            #expect(console.fatal == nil, sourceLocation: sourceLocation)
            #expect(
                console.otherLines.isEmpty, "unexpected output: \(console.otherLines)", sourceLocation: sourceLocation)
            run = ProbeRun(
                image: image, reports: console.reports, machine: nil, qemu: qemu,
                resolutions: qemu.resolutions.compactMap { $0 })
        }
        #expect(run.reports.count == cases.count, "reports:\n\(run.reportLines)", sourceLocation: sourceLocation)
        for index in cases.indices {
            let got = index < run.reports.count ? run.reports[index] : []
            let probe = cases[index].probe
            let what = "probe \(index): \(probe.operation) \(probe.size) at \(hex(probe.virtualAddress))"
            #expect(
                got.map { hex($0) } == expectedReport(index).map { hex($0) }, "\(what): expected by hand",
                sourceLocation: sourceLocation)
            #expect(
                got.map { hex($0) } == predicted[index].map { hex($0) }, "\(what): predicted by the engine",
                sourceLocation: sourceLocation)
        }
        return run
    }
}

/// A scenario's run: the reports (without the done report) and what ran them.
struct ProbeRun {
    /// The image the guest ran, its tables as the run left them.
    var image: BootImage
    var reports: [[UInt64]]
    /// The KVM machine, for a KVM run.
    var machine: Machine?
    /// QEMU's run, for a QEMU run.
    var qemu: QEMURun?
    /// The copy-on-write resolutions the host made, in order.
    var resolutions: [Resolution]

    var reportLines: String { reports.map { $0.map { hex($0) }.joined(separator: " ") }.joined(separator: "\n") }
}

/// The qword the tests write at 8-aligned physical address `pa` (distinct for every address).
func patternQword(_ pa: UInt64) -> UInt64 { (pa &* 0x9E37_79B9_7F4A_7C15) ^ 0x0F1E_2D3C_4B5A_6978 }

/// The `size` bytes of the pattern at `pa`, little-endian (what a read of the untouched pattern returns).
func pattern(_ pa: UInt64, _ size: Int) -> UInt64 {
    var value: UInt64 = 0
    for k in 0..<UInt64(size) {
        let address = pa + k
        let byte = (patternQword(address & ~7) >> ((address & 7) * 8)) & 0xFF
        value |= byte << (k * 8)
    }
    return value
}

/// The first `count` bytes of a guest binary as a little-endian number.
func leadingBytes(_ name: String, _ count: Int) throws -> UInt64 {
    try guest(name).prefix(count).enumerated().reduce(0) { $0 | UInt64($1.element) << (UInt64($1.offset) * 8) }
}
