import Foundation
@_spi(Testing) import MicroVM
import PageTables
import Testing

// The QEMU oracle (design.md §5): i686 paging and amd64 1 GiB leaves cannot run on this machine's KVM, so
// the same host-built boot image runs on QEMU's software MMU (QEMURunner.swift), the probe guest reports on
// the console (ProbeConsole.swift), and every report is checked against the hand-written expectation and
// the engine-predicted model (ProbeScenario.swift, ProbeModel.swift, Scenarios.swift).

@Suite("QEMU oracle: the probe guests on an emulated MMU", .enabled(if: qemuTestsRun, qemuReason))
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
        try scenario.check(on: .qemuAlone)
    }

    @Test("i686, 4 MiB leaves (CR4.PSE)")
    func i686LargeLeaves() throws {
        let scenario = Scenarios.i686Large()
        let image = try scenario.makeImage()
        #expect(image.addressSpace.requiresPageSizeExtension)
        for va: UInt64 in [0xC000_0000, 0xC080_0000, 0x4000_0000, 0xFFC0_0000, 0x40_0000] {
            #expect(try image.addressSpace.lookup(va)?.leafSize == .size4M, "\(hex(va))")
        }
        try scenario.check(on: .qemuAlone)
    }

    @Test(
        "the i686 scenarios with the host answering: write faults ask (C lines), the host refuses, the reports stay",
        arguments: [false, true])
    func i686Answered(large: Bool) throws {
        let scenario = large ? Scenarios.i686Large() : try Scenarios.i686Small()
        let run = try scenario.check(on: .qemu)
        let qemu = try #require(run.qemu)
        // One `C` line per write to a present read-only page, each refused: nothing is copy-on-write here.
        let writeFaults = run.reports.filter { $0[1] == 1 && $0[3] & (errorPresent | errorWrite) == 0x3 }
        #expect(!writeFaults.isEmpty)
        #expect(qemu.console.copyOnWriteRequests.map(\.address) == writeFaults.map { $0[4] })
        #expect(qemu.resolutions.count == writeFaults.count && qemu.resolutions.allSatisfy { $0 == nil })
    }

    @Test("amd64, 1 GiB leaves: upper half, above 4 GiB, aliases, NX, faults")
    func amd64GigabyteLeaves() throws {
        let scenario = try Scenarios.amd64Huge()
        let image = try scenario.makeImage()
        for va: UInt64 in [0xFFFF_8000_0000_0000, 0x1_0000_0000, 0x4000_0000, 0x8000_0000, 0xFFFF_FFFF_C000_0000] {
            #expect(try image.addressSpace.lookup(va)?.leafSize == .size1G, "\(hex(va))")
        }
        #expect(try image.addressSpace.lookup(0x20_0000)?.leafSize == .size2M)
        try scenario.check(on: .qemu)
    }

    @Test("amd64, the same mappings in 2 MiB leaves")
    func amd64TwoMegabyteLeaves() throws {
        let scenario = try Scenarios.amd64Huge(allowed: [.size2M])
        let image = try scenario.makeImage()
        #expect(try image.addressSpace.lookup(0xFFFF_8000_0000_0000)?.leafSize == .size2M)
        try scenario.check(on: .qemuAlone)
    }

    @Test("the KVM probe scenario on QEMU too (amd64, 2 MiB leaves): the same reports, the same copy")
    func kvmScenarioOnQEMU() throws {
        let run = try Scenarios.amd64OnKVM(leafSizes: [.size2M]).check(on: .qemu)
        try #require(run.resolutions.count == 1)
        #expect(run.resolutions[0].virtualAddress == 0x6000_0000 && run.resolutions[0].from == 0x40_0000)
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
            architecture: .i686, memorySize: 16 << 20, leafSizes: [],
            copyOnWrite: Mapping(
                physicalBase: 0x40_0000, virtualBase: 0x4000_0000, length: 4 << 20,
                kind: .copyOnWrite(executable: false)),
            leafSize: .size4K, page: 0x4000_0000, frame: 0x40_0000
        ).check()
    }

    @Test("runtime copy-on-write, host live on the console: i686, a page inside a 4 MiB leaf")
    func liveCopyOnWriteI686LargeLeaf() throws {
        try LiveCopyOnWrite(
            architecture: .i686, memorySize: 16 << 20, leafSizes: [.size4M],
            copyOnWrite: Mapping(
                physicalBase: 0x40_0000, virtualBase: 0x4000_0000, length: 4 << 20,
                kind: .copyOnWrite(executable: false)),
            leafSize: .size4M, page: 0x4010_0000, frame: 0x50_0000
        ).check()
    }

    @Test("runtime copy-on-write, host live on the console: amd64, a page inside a 1 GiB leaf")
    func liveCopyOnWriteAMD64GigabyteLeaf() throws {
        try LiveCopyOnWrite(
            architecture: .amd64, memorySize: 32 << 20, leafSizes: [.size2M, .size1G],
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
        let machine = try scenario.makeMachine(consoleFlags: .reportOnConsole)
        try #require(try machine.addressSpace.lookup(0xFFFF_8000_0000_0000)?.leafSize == .size2M)
        #expect(try machine.run() == .exited(status: 0))
        let kvmText = String(decoding: machine.consoleOutput, as: UTF8.self)
        let qemu = try runOnQEMU(try scenario.makeImage())
        #expect(kvmText == qemu.standardOutput)
        let console = ProbeConsole(parsing: kvmText)
        #expect(console.done)
        #expect(console.reports == scenario.cases.indices.map(scenario.expectedReport))
    }
}

/// A copy-on-write range (one large leaf where allowed) plus a read-only alias of one of its frames, in RAM
/// shared with QEMU; the probes write through the copy-on-write VA (a `C` line the host resolves), read
/// back, read the alias (the old bytes) and a neighbouring page (still the original), and write the alias
/// (a `C` line the host refuses: a plain write fault).
private struct LiveCopyOnWrite {
    var architecture: Architecture
    var memorySize: UInt64
    var leafSizes: AllowedLeafSizes
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

    var scenario: ProbeScenario {
        ProbeScenario(
            architecture: architecture, memorySize: memorySize, leafSizes: leafSizes,
            mappings: [copyOnWrite, Mapping(physicalBase: frame, virtualBase: alias, length: 0x1000, kind: .readOnly)],
            patterned: [(frame, 0x2000)],
            cases: [
                ProbeCase(.write(page + 0x10, 8, Self.value), .ok()),
                ProbeCase(.read(page + 0x10, 8), .ok(Self.value)),
                ProbeCase(.read(page + 0x18, 8), .ok(pattern(frame + 0x18, 8))),  // the rest came along in the copy
                ProbeCase(.read(alias + 0x10, 8), .ok(pattern(frame + 0x10, 8))),  // the original frame: old bytes
                ProbeCase(.read(page + 0x1010, 8), .ok(pattern(frame + 0x1010, 8))),  // neighbour: still the original
                // Read-only, not copy-on-write: the host answers 1 and the fault is reported.
                ProbeCase(.write(alias + 0x20, 4, 1), .pageFault(error: errorPresent | errorWrite)),
                ProbeCase(.write(page + 0x20, 4, UInt64(Self.second)), .ok()),  // writable now: no second C line
                ProbeCase(.read(page + 0x1020, 4), .ok(pattern(frame + 0x1020, 4))),
            ])
    }

    /// i686 has no NX: every present page reads back executable.
    var writableKind: MappingKind { architecture == .amd64 ? .readWrite : .readWriteExecute }
    var copyOnWriteKind: MappingKind { .copyOnWrite(executable: architecture == .i686) }

    func check() throws {
        let before = try #require(try scenario.makeImage().addressSpace.lookup(page))
        #expect(before.physicalAddress == frame && before.kind == copyOnWriteKind && before.leafSize == leafSize)

        let run = try scenario.check(on: .qemu)
        let qemu = try #require(run.qemu)
        let image = run.image
        let memory = image.memory
        #expect(
            qemu.console.copyOnWriteRequests.map { hex($0.address) } == [page + 0x10, alias + 0x20].map { hex($0) })
        try #require(qemu.resolutions.count == 2, "output:\n\(qemu.standardOutput)")
        #expect(qemu.resolutions[1] == nil)
        let resolution = try #require(qemu.resolutions[0])
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
        let dump = image.addressSpace.dump()
        let remapped =
            "\(hex(page, digits: digits))-\(hex(page + 0xFFF, digits: digits)) -> "
            + "\(hex(to, digits: digits))-\(hex(to + 0xFFF, digits: digits))"
        #expect(dump.contains(remapped), "dump:\n\(dump)")
    }
}
