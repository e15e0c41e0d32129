import Foundation
import KVMKit
@_spi(Testing) import MicroVM
import PageTables
import Testing

@Suite("snapshots: take, restore, reset, save and load", .enabled(if: kvmUsable, kvmReason))
struct SnapshotTests {
    func counter(resettable: Bool = true) throws -> Machine {
        var config = try configuration("counter64")
        config.resettable = resettable
        return try Machine(configuration: config)
    }

    static let line = Array("counter = 42, scratch = 0\n".utf8)

    @Test("the guest's snapshot request stops the run; the machine runs on from there")
    func request() throws {
        let machine = try counter(resettable: false)
        #expect(try machine.run() == .snapshotRequested)
        #expect(machine.consoleOutput == Array("initialising\n".utf8))
        #expect(try machine.run() == .halted)
        #expect(machine.consoleOutput == Array("initialising\n".utf8) + Self.line)
    }

    @Test("reset brings the machine back to its snapshot, again and again")
    func resetInPlace() throws {
        let machine = try counter()
        #expect(try machine.run() == .snapshotRequested)
        _ = try machine.snapshot()
        for _ in 0..<5 {
            #expect(try machine.run() == .halted)
            try machine.reset()
        }
        #expect(machine.consoleOutput == Array("initialising\n".utf8) + Array([[UInt8]](repeating: Self.line, count: 5).joined()))
    }

    @Test("a snapshot restores into new machines, which share it and continue from the request")
    func restore() throws {
        let origin = try counter(resettable: false)
        #expect(try origin.run() == .snapshotRequested)
        let snapshot = try origin.snapshot()
        var settings = try configuration("counter64")
        settings.console = .capture
        let machines = try (0..<3).map { _ in try Machine(restoring: snapshot, configuration: settings) }
        for machine in machines {
            #expect(try machine.run() == .halted)
            #expect(machine.consoleOutput == Self.line)
            try machine.reset()
            #expect(try machine.run() == .halted)
            #expect(machine.consoleOutput == Self.line + Self.line)
        }
    }

    @Test("a snapshot file round-trips")
    func file() throws {
        let machine = try counter(resettable: false)
        #expect(try machine.run() == .snapshotRequested)
        let path = temporaryPath("counter.snap")
        defer { unlink(path) }
        try machine.snapshot().write(to: path)
        let loaded = try Snapshot(contentsOf: path)
        var settings = try configuration("counter64")
        settings.console = .capture
        let restored = try Machine(restoring: loaded, configuration: settings)
        #expect(try restored.run() == .halted)
        #expect(restored.consoleOutput == Self.line)
    }
}

/// Resets must bring back exactly the snapshot, whatever the guest did in between.
@Suite("reset is exact after hostile runs", .enabled(if: kvmUsable, kvmReason))
struct ResetCorrectnessTests {
    /// Whether every byte of `machine`'s RAM equals its snapshot's.
    func memoryMatches(_ machine: Machine, _ snapshot: Snapshot, sourceLocation: SourceLocation = #_sourceLocation) {
        let size = Int(machine.memory.size)
        let chunk = 1 << 20
        var offset = 0
        while offset < size {
            let ram = machine.memory.read(at: UInt64(offset), count: chunk)
            let saved = snapshot.image.read(at: UInt64(offset), count: chunk)
            if ram != saved {
                let page = (0..<(chunk / 4096)).first { ram?[($0 * 4096)..<($0 * 4096 + 4096)] != saved?[($0 * 4096)..<($0 * 4096 + 4096)] }
                Issue.record(
                    "RAM differs from the snapshot at page \(hex(UInt64((offset >> 12) + (page ?? 0))))",
                    sourceLocation: sourceLocation)
                return
            }
            offset += chunk
        }
    }

    func scribbler(ringEntries: Int = 65_536) throws -> (Machine, Snapshot) {
        var config = try configuration("scribble64")
        config.pageSizePolicy = .small
        config.resettable = true
        config.dirtyRingEntries = ringEntries
        let machine = try Machine(configuration: config)
        #expect(try machine.run() == .snapshotRequested)
        return (machine, try machine.snapshot())
    }

    @Test("a guest that wrote every page, rewrote its tables and loaded its own CR3 is reset exactly")
    func everything() throws {
        let (machine, snapshot) = try scribbler()
        for round in 1...3 {
            #expect(try machine.run() == .halted, "round \(round)")
            #expect(try machine.specialRegisters().cr3 == 0x6000)
            try machine.reset()
            memoryMatches(machine, snapshot)
        }
        #expect(machine.consoleOutput == Array([[UInt8]](repeating: Array("scribbled\n".utf8), count: 3).joined()))
    }

    @Test("a dirty ring too small for the run: the reset rebuilds the VM and is still exact")
    func ringOverflow() throws {
        let (machine, snapshot) = try scribbler(ringEntries: 256)
        // Thousands of writes between two exits overflow a 256-entry ring.
        #expect(throws: RunError.dirtyTrackingLost) { try machine.run() }
        try machine.reset()
        memoryMatches(machine, snapshot)
        // The rebuilt VM tracks writes again, within what its ring holds.
        #expect(throws: RunError.dirtyTrackingLost) { try machine.run() }
        try machine.reset()
        memoryMatches(machine, snapshot)
    }

    @Test("a guest that faulted, timed out or was interrupted runs again after a reset")
    func afterFailures() throws {
        var config = try configuration("counter64")
        config.resettable = true
        config.timeout = .milliseconds(100)
        let machine = try Machine(configuration: config)
        #expect(try machine.run() == .snapshotRequested)
        let snapshot = try machine.snapshot()
        // Make the next run loop for ever: write `jmp $` over the instruction after the request.
        let rip = snapshot.vcpu.registers.rip
        let physical = try #require(try machine.addressSpace.lookup(rip)).physicalAddress
        machine.memory.write([0xEB, 0xFE], at: physical)
        #expect(throws: RunError.self) { try machine.run() }
        // 14 exits since the machine started: 13 console bytes and the snapshot request.
        #expect(throws: RunError.needsReset(after: "timeout: the guest was still running after 100 ms (RIP \(hex(rip)), 14 exits)")) {
            try machine.run()
        }
        try machine.reset()  // the host's write is undone too
        memoryMatches(machine, snapshot)
        #expect(try machine.run() == .halted)
        #expect(machine.consoleOutput.suffix(26) == Array("counter = 42, scratch = 0\n".utf8)[...])
    }
}

@Suite("snapshot compaction", .enabled(if: kvmUsable, kvmReason))
struct CompactionTests {
    /// Every space of `compact` maps the same virtual pages as in `original`, with the same permissions and
    /// the same bytes, and the pages reached through two spaces' shared tables are the same frames again.
    func sameSpaces(_ original: Snapshot, _ compact: Snapshot, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(original.roots.count == compact.roots.count, sourceLocation: sourceLocation)
        let oldMemory = try GuestMemory(privateViewOf: original.image)
        let newMemory = try GuestMemory(privateViewOf: compact.image)
        for (oldRoot, newRoot) in zip(original.roots, compact.roots) {
            let old = AMD64PageTables(
                tables: PageTable(ops: GuestTableOps(memory: oldMemory, root: oldRoot), allowedLeafSizes: [.size2M]))
            let new = AMD64PageTables(
                tables: PageTable(ops: GuestTableOps(memory: newMemory, root: newRoot), allowedLeafSizes: [.size2M]))
            for half in old.virtualSpace {
                var oldPages: [(UInt64, UInt64, MappingKind, Bool)] = []
                var newPages: [(UInt64, UInt64, MappingKind, Bool)] = []
                try old.forEachLeaf(virtualBase: half.base, length: half.length, maximumTables: .max) { t in
                    var offset: UInt64 = 0
                    while offset < t.length {
                        oldPages.append((t.virtualAddress + offset, t.physicalAddress + offset, t.kind, t.userAccessible))
                        offset += 4096
                    }
                }
                try new.forEachLeaf(virtualBase: half.base, length: half.length, maximumTables: .max) { t in
                    var offset: UInt64 = 0
                    while offset < t.length {
                        newPages.append((t.virtualAddress + offset, t.physicalAddress + offset, t.kind, t.userAccessible))
                        offset += 4096
                    }
                }
                #expect(oldPages.count == newPages.count, sourceLocation: sourceLocation)
                for (a, b) in zip(oldPages, newPages) {
                    guard a.0 == b.0, a.2 == b.2, a.3 == b.3,
                        oldMemory.read(at: a.1, count: 4096) == newMemory.read(at: b.1, count: 4096)
                    else {
                        Issue.record("page \(hex(UInt64(a.0))) differs after compaction", sourceLocation: sourceLocation)
                        return
                    }
                }
            }
        }
    }

    @Test("a compacted counter snapshot keeps what is mapped, drops what is not, and runs as the original")
    func counter() throws {
        var config = try configuration("counter64")
        config.memorySize = 64 << 20
        let machine = try Machine(configuration: config)
        #expect(try machine.run() == .snapshotRequested)
        // 40 MiB of RAM the guest will never use, unmapped: compaction drops their frames.
        try machine.addressSpace.unmap(virtualBase: 8 << 20, length: 40 << 20)
        let snapshot = try machine.snapshot()
        let (compact, report) = try snapshot.compacted()
        try sameSpaces(snapshot, compact)
        #expect(report.originalMemorySize == 64 << 20)
        #expect(report.memorySize < 26 << 20)
        #expect(report.framesKept == (64 - 40) * 256 - 1 - 64)  // all RAM but the 40 MiB, page 0 and the scratch frames
        var settings = try configuration("counter64")
        settings.console = .capture
        let restored = try Machine(restoring: compact, configuration: settings)
        #expect(try restored.run() == .halted)
        #expect(restored.consoleOutput == Array("counter = 42, scratch = 0\n".utf8))
        try restored.reset()
        #expect(try restored.run() == .halted)
    }

    @Test("spaces that share tables share them again after compaction; an aliased frame is kept once")
    func sharedSpaces() throws {
        var config = try configuration("spaces64")
        config.memorySize = 32 << 20
        let machine = try Machine(configuration: config)
        let index = try machine.makeAddressSpace(sharing: [(0, 1 << 30)])
        try machine.addressSpace(at: index)!.map(
            Mapping(physicalBase: 0x30_0000, virtualBase: 0x7000_0000_0000, length: 0x1000, kind: .readWrite))
        // An alias of a RAM page in the upper half: one frame, two mappings.
        try machine.addressSpace.map(
            Mapping(physicalBase: 0x30_0000, virtualBase: 0xFFFF_8000_0000_0000, length: 0x1000, kind: .readOnly))
        machine.memory.store(UInt64(0x1122_3344_5566_7788), at: 0x30_0000)
        machine.memory.store(machine.roots[index], at: 0x3F00)
        let snapshot = try machine.snapshot()
        let (compact, report) = try snapshot.compacted()
        try sameSpaces(snapshot, compact)
        #expect(report.duplicatesDropped >= 1)
        // The two roots' first entries lead to different PDPTs whose first entries are the same page directory.
        let memory = try GuestMemory(privateViewOf: compact.image)
        let pdpts = compact.roots.map { memory.load(UInt64.self, at: $0)! & AMD64.frameAddressMask }
        #expect(pdpts[0] != pdpts[1])
        #expect(memory.load(UInt64.self, at: pdpts[0]) == memory.load(UInt64.self, at: pdpts[1]))
        // The restored machine knows both compacted roots, and reaches the extra page through either mapping.
        let restored = try Machine(restoring: compact)
        #expect(restored.roots == compact.roots)
        let extra = try #require(try restored.addressSpace(at: 1)?.lookup(0x7000_0000_0000))
        let alias = try #require(try restored.addressSpace.lookup(0xFFFF_8000_0000_0000))
        #expect(extra.physicalAddress == alias.physicalAddress)
        #expect(restored.memory.load(UInt64.self, at: extra.physicalAddress) == 0x1122_3344_5566_7788)
    }
}
