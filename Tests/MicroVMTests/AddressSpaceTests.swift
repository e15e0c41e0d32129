import Foundation
import KVMKit
@_spi(Testing) import MicroVM
import PageTables
import Testing

@Suite("several address spaces in one machine", .enabled(if: kvmUsable, kvmReason))
struct MultipleSpaceTests {
    /// spaces64 with an extra space sharing the low GiB and mapping 0x700000000000 to a page of known bytes.
    func machine() throws -> (Machine, Int) {
        var config = try configuration("spaces64")
        config.resettable = true
        let machine = try Machine(configuration: config)
        let index = try machine.makeAddressSpace(sharing: [(0, 1 << 30)])
        let space = try #require(machine.addressSpace(at: index))
        try space.map(Mapping(physicalBase: 0x30_0000, virtualBase: 0x7000_0000_0000, length: 0x1000, kind: .readWrite))
        machine.memory.store(UInt64(0x1122_3344_5566_7788), at: 0x30_0000)
        machine.memory.store(machine.roots[index], at: 0x3F00)
        return (machine, index)
    }

    @Test("a space the host builds shares the boot space's tables and has its own mappings; the guest switches to it")
    func hostBuiltSpace() throws {
        let (machine, index) = try machine()
        let boot = machine.addressSpace, extra = try #require(machine.addressSpace(at: index))
        // Shared: the same page directory below both roots' first entry.
        let bootPDPT = machine.memory.load(UInt64.self, at: boot.rootPhysicalAddress)! & AMD64.frameAddressMask
        let extraPDPT = machine.memory.load(UInt64.self, at: extra.rootPhysicalAddress)! & AMD64.frameAddressMask
        #expect(bootPDPT != extraPDPT)
        #expect(machine.memory.load(UInt64.self, at: bootPDPT) == machine.memory.load(UInt64.self, at: extraPDPT))
        #expect(try extra.lookup(0x10_0000)?.physicalAddress == 0x10_0000)
        // Its own: the extra mapping exists only there.
        #expect(try boot.lookup(0x7000_0000_0000) == nil)
        #expect(try extra.lookup(0x7000_0000_0000)?.physicalAddress == 0x30_0000)

        #expect(try machine.run() == .halted)
        #expect(machine.reports == [[0x1122_3344_5566_7788], [2]])
        // The guest registered a root of its own and halted in it; the dump walks it.
        #expect(machine.roots == [boot.rootPhysicalAddress, extra.rootPhysicalAddress, 0x6000])
        #expect(try machine.specialRegisters().cr3 == 0x6000)
        #expect(machine.dumpTables().hasPrefix("(the guest's own tables at 0x6000)\n"))
    }

    @Test("a snapshot keeps every root; a reset and a file restore bring them back")
    func snapshotKeepsRoots() throws {
        let (machine, _) = try machine()
        let snapshot = try machine.snapshot()
        #expect(snapshot.roots.count == 2)
        #expect(try machine.run() == .halted)
        #expect(machine.roots.count == 3)
        try machine.reset()
        #expect(machine.roots == snapshot.roots)
        #expect(try machine.run() == .halted)
        #expect(machine.reports == [[0x1122_3344_5566_7788], [2]])

        let path = temporaryPath("spaces.snap")
        defer { unlink(path) }
        try snapshot.write(to: path)
        let restored = try Machine(restoring: try Snapshot(contentsOf: path))
        #expect(restored.roots == snapshot.roots)
        #expect(try restored.run() == .halted)
        #expect(restored.reports == [[0x1122_3344_5566_7788], [2]])
    }

    @Test("shared ranges must be whole blocks; roots must be tables in RAM")
    func refusals() throws {
        let machine = try Machine(configuration: try configuration("hello64"))
        #expect(throws: AddressSpaceError.tables(.misaligned(.length, 0x1000))) {
            try machine.makeAddressSpace(sharing: [(0, 0x1000)])
        }
        #expect(throws: AddressSpaceError.outsideMemory(0x1234)) { try machine.registerRoot(0x1234) }
        #expect(throws: AddressSpaceError.outsideMemory(0x1_0000_0000)) { try machine.registerRoot(0x1_0000_0000) }
    }
}

@Suite("movable tables in restored machines", .enabled(if: kvmUsable, kvmReason))
struct MovableTableTests {
    @Test("a host-side map after restore copies the tables it changes: the snapshot's tables stay as they were")
    func mapAfterRestore() throws {
        var config = try configuration("probe64")
        config.pageSizePolicy = .small
        let probes = [Probe(.read, 0x6000_0000), Probe(.read, 0x10_0000, size: 1)]
        let origin = try Machine(configuration: config, probes: probes)
        let snapshot = try origin.snapshot()
        let oldRoot = snapshot.roots[0]
        let restored = try Machine(restoring: snapshot)
        let before = try #require(snapshot.image.read(at: 0, count: Int(snapshot.memorySize)))

        restored.memory.store(UInt64(0xFEED_FACE_CAFE_BEEF), at: 0x40_0000)
        try restored.addressSpace.map(
            Mapping(physicalBase: 0x40_0000, virtualBase: 0x6000_0000, length: 0x1000, kind: .readOnly))

        // The host's tables moved: a new root, with copies of the tables on the way to the new page.
        let newRoot = restored.addressSpace.rootPhysicalAddress
        #expect(newRoot != oldRoot)
        // The snapshot's tables, in the machine's own RAM, still describe the old space.
        let old = restored.addressSpace.space(root: oldRoot)
        #expect(try old.lookup(0x6000_0000) == nil)
        #expect(try old.lookup(0x10_0000)?.physicalAddress == 0x10_0000)
        #expect(try restored.addressSpace.lookup(0x6000_0000)?.physicalAddress == 0x40_0000)
        #expect(try restored.addressSpace.lookup(0x10_0000)?.physicalAddress == 0x10_0000)
        // Not a byte of the snapshot changed, in its image or in the machine's view of the old tables.
        #expect(snapshot.image.read(at: 0, count: Int(snapshot.memorySize)) == before)

        // The guest runs on the new tables: CR3 followed the host's new root.
        #expect(try restored.run() == .halted)
        #expect(restored.reports[0] == [0, 0, 0xFEED_FACE_CAFE_BEEF, 0, 0, 0])
        #expect(restored.roots[0] == newRoot)
        // A reset goes back to the snapshot's root and tables.
        try restored.reset()
        #expect(restored.addressSpace.rootPhysicalAddress == oldRoot)
        #expect(try restored.addressSpace.lookup(0x6000_0000) == nil)
    }
}

/// An i686 boot image (4 MiB leaves) taken as a snapshot and continued with movable ops, with two pages
/// mapped from the host: a read-only 4 KiB page at 0x80_1000 -> 0xE0_0000, inside what a 4 MiB leaf maps
/// (the leaf is split into a new page table and the directory that held it copied, so the root moves), and
/// a writable one at 0xC000_0000 -> 0xE0_1000, where nothing was mapped (a new page table under the copied
/// directory). Returns the image, its bytes before the maps, the private memory, the old root and the space.
private func restoreAndMapTwoPages(
    _ boot: BootImage
) throws -> (image: SnapshotImage, before: [UInt8], memory: GuestMemory, oldRoot: UInt64, space: any AddressSpace) {
    let image = try SnapshotImage(copying: boot.memory)
    let before = try #require(image.read(at: 0, count: Int(image.size)))
    let memory = try GuestMemory(privateViewOf: image)
    let oldRoot = boot.addressSpace.rootPhysicalAddress
    let space = restoredAddressSpace(
        architecture: .i686, memory: memory, arena: boot.addressSpace.arena, root: oldRoot,
        allowedLeafSizes: [.size4M], walkableLeafSizes: [.size4M])
    try space.map(Mapping(physicalBase: 0xE0_0000, virtualBase: 0x80_1000, length: 0x1000, kind: .readOnly))
    try space.map(Mapping(physicalBase: 0xE0_1000, virtualBase: 0xC000_0000, length: 0x1000, kind: .readWrite))
    return (image, before, memory, oldRoot, space)
}

/// The same for i686, whose machines this host's KVM cannot run: the engine part, on a boot image's memory.
@Suite("movable tables over a snapshot's memory (i686, without KVM)")
struct I686MovableTableTests {
    @Test("a map over a snapshot's i686 tables copies the tables it changes; the image and the old root are untouched")
    func mapOverSnapshot() throws {
        var config = MachineConfiguration(architecture: .i686, image: [0xF4])
        config.memorySize = 16 << 20
        let boot = try BootImage(configuration: config, allowedLeafSizes: [.size4M])
        let (image, before, memory, oldRoot, space) = try restoreAndMapTwoPages(boot)
        #expect(space.rootPhysicalAddress != oldRoot)
        let old = space.space(root: oldRoot)
        #expect(try old.lookup(0x80_1000)?.physicalAddress == 0x80_1000)
        #expect(try old.lookup(0x80_1000)?.leafSize == .size4M)
        #expect(try old.lookup(0xC000_0000) == nil)
        #expect(try space.lookup(0x80_1000)?.physicalAddress == 0xE0_0000)
        #expect(try space.lookup(0x80_1000)?.leafSize == .size4K)
        #expect(try space.lookup(0x80_2000)?.physicalAddress == 0x80_2000)  // the split kept its neighbours
        #expect(try space.lookup(0xC000_0000)?.physicalAddress == 0xE0_1000)
        // The image other machines would share is byte for byte what it was; so are the old tables in RAM.
        #expect(image.read(at: 0, count: Int(image.size)) == before)
        #expect(memory.read(at: oldRoot, count: 4096) == Array(before[Int(oldRoot)..<Int(oldRoot + 4096)]))
    }
}

/// The i686 case proven by a CPU: QEMU's MMU walks the moved tables from the new root.
@Suite("movable tables over a snapshot's memory, walked by QEMU (i686)", .enabled(if: qemuTestsRun, qemuReason))
struct I686MovableTableQEMUTests {
    @Test("probe32 on QEMU reads through the moved tables: new pages, split neighbours, old pages, faults")
    func probesOnMovedTables() throws {
        var config = MachineConfiguration(architecture: .i686, image: try guest("probe32"))
        config.memorySize = 16 << 20
        let boot = try BootImage(configuration: config, allowedLeafSizes: [.size4M])
        // Known bytes: the two frames the host maps after the snapshot, and a page the split keeps.
        #expect(boot.memory.store(UInt64(0x1111_2222_3333_4444), at: 0xE0_0000))
        #expect(boot.memory.store(UInt64(0x5555_6666_7777_8888), at: 0xE0_1000))
        #expect(boot.memory.store(UInt64(0x9999_AAAA_BBBB_CCCC), at: 0x80_2000))
        try boot.setProbes(
            [
                .read(0x80_1000, 8),  // now the read-only page at 0xE0_0000 (was inside a 4 MiB leaf)
                .read(0x80_2000, 8),  // the split leaf's neighbour, still identity
                .read(0xC000_0000, 8),  // a new page where nothing was mapped
                .write(0x80_1000, 4, 0xDEAD),  // read-only now: a #PF, P and W/R set
                .write(0xC000_0000, 4, 0x1234_5678),  // writable
                .read(0xC000_0000, 4),
                .read(0xC000_1000, 4),  // its neighbour was never mapped
            ], flags: .reportOnConsole)
        let (image, before, memory, oldRoot, space) = try restoreAndMapTwoPages(boot)
        let newRoot = space.rootPhysicalAddress
        #expect(newRoot != oldRoot)
        // The trampoline loads CR3 from the boot information block, as a restored vCPU's CR3 follows the root.
        #expect(memory.store(UInt64(newRoot), at: Layout.bootInfoAddress + 16))

        let ram = temporaryPath("i686-moved-\(UInt64.random(in: 0...UInt64.max))")
        defer { unlink(ram) }
        try Data(try #require(memory.read(at: 0, count: Int(memory.size)))).write(to: URL(fileURLWithPath: ram))
        let run = try runOnQEMU(boot, sharedRAM: ram)
        #expect(run.status == 1, "stderr: \(run.standardError)")
        #expect(run.console.done, "output:\n\(run.standardOutput)")
        let slot = try #require(run.console.reports.first { $0[0] == 3 })[5]
        #expect(
            run.console.reports == [
                [0, 0, 0x1111_2222_3333_4444, 0, 0, 0],
                [1, 0, 0x9999_AAAA_BBBB_CCCC, 0, 0, 0],
                [2, 0, 0x5555_6666_7777_8888, 0, 0, 0],
                [3, 1, 14, 0x3, 0x80_1000, slot],
                [4, 0, 0, 0, 0, 0],
                [5, 0, 0x1234_5678, 0, 0, 0],
                [6, 1, 14, 0x0, 0xC000_1000, run.console.reports[6][5]],
            ], "output:\n\(run.standardOutput)")
        // Neither the shared image nor the snapshot's tables in the machine's memory changed.
        #expect(image.read(at: 0, count: Int(image.size)) == before)
        #expect(memory.read(at: oldRoot, count: 4096) == Array(before[Int(oldRoot)..<Int(oldRoot + 4096)]))
    }
}
