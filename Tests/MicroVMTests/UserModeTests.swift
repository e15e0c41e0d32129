import Foundation
@_spi(Testing) import MicroVM
import PageTables
import Testing

// User mode, proven: the probe runtime drops to CPL 3 for the probes that ask (probe flags bit 0, or every
// probe with boot-info flag bit 2), takes every fault back in ring 0 and goes on. The scenarios
// (Scenarios.swift, "User mode") hold the exact reports; each is checked by hand and by the model, which
// applies U/S at every level of the walk.

@Suite("probe records and user pages for CPL 3 (no KVM)")
struct UserModeImageTests {
    func image(_ probes: [Probe], flags: BootInfo.Flags = []) throws -> BootImage {
        let image = try BootImage(
            configuration: MachineConfiguration(architecture: .amd64, image: try guest("probe64")),
            allowedLeafSizes: [.size2M])
        try image.setProbes(probes, flags: flags)
        return image
    }

    @Test("a probe record carries the CPL 3 request in its flags (offset 24, bit 0)")
    func record() throws {
        let image = try image([.read(0x10_0000, 8), .read(0x10_0000, 8).inUserMode])
        #expect(image.memory.load(UInt32.self, at: Layout.probeListAddress + 24) == 0)
        #expect(image.memory.load(UInt32.self, at: Layout.probeListAddress + 32 + 24) == 1)
        #expect(image.memory.load(UInt32.self, at: Layout.probeListAddress + 32 + 28) == 0)
        #expect(image.bootInfo.flags == [])
        #expect(
            try self.image([], flags: .probesInUserMode).memory.load(UInt32.self, at: Layout.bootInfoAddress + 76) == 4)
    }

    @Test("the image and the user stack page become user pages exactly when a probe runs at CPL 3")
    func userPages() throws {
        for (probes, flags, user) in [
            ([Probe.read(0x10_0000, 8)], BootInfo.Flags(), false),
            ([Probe.read(0x10_0000, 8).inUserMode], [], true),
            ([Probe.read(0x10_0000, 8)], .probesInUserMode, true),
        ] as [([Probe], BootInfo.Flags, Bool)] {
            let space = try image(probes, flags: flags).addressSpace
            let code = try #require(try space.lookup(0x10_0000))
            #expect(code.userAccessible == user && code.kind == .readWriteExecute && code.physicalAddress == 0x10_0000)
            let stack = try #require(try space.lookup(Layout.userStack.lowerBound))
            #expect(stack.userAccessible == user && stack.kind == .readWrite)
            #expect(try space.lookup(Layout.userStack.upperBound)?.userAccessible == false)  // the kernel stack
            #expect(try space.lookup(Layout.bootInfoAddress)?.userAccessible == false)
            #expect(try space.lookup(0x10_1000)?.userAccessible == false)  // past the image
        }
    }
}

@Suite("user mode on KVM (amd64)", .enabled(if: kvmUsable, kvmReason))
struct UserModeKVMTests {
    @Test(
        "CPL 3 probes: user pages as mapped, supervisor pages fault with U/S=1, NX, copy-on-write, U/S at every level",
        arguments: AMD64ProbeTests.leafPolicies)
    func userMode(_ leafSizes: AllowedLeafSizes) throws {
        let run = try Scenarios.amd64UserMode(leafSizes: leafSizes).check(on: .kvm)
        let machine = try #require(run.machine)
        // The host copied the user copy-on-write page for the user write, and the supervisor one only for
        // the ring-0 write: the user write to it was refused.
        try #require(run.resolutions.count == 2)
        #expect(run.resolutions[0].virtualAddress == 0x6000_0000 && run.resolutions[0].from == 0x60_0000)
        #expect(run.resolutions[1].virtualAddress == 0x6200_0000 && run.resolutions[1].from == 0x80_0000)
        let copied = try #require(try machine.addressSpace.lookup(0x6000_0000))
        #expect(copied.physicalAddress == run.resolutions[0].to && copied.kind == .readWrite && copied.userAccessible)
        let supervisorCopy = try #require(try machine.addressSpace.lookup(0x6200_0000))
        #expect(supervisorCopy.physicalAddress == run.resolutions[1].to && !supervisorCopy.userAccessible)
        let neighbour = try #require(try machine.addressSpace.lookup(0x6000_1000))
        #expect(neighbour.kind == .copyOnWrite(executable: false) && neighbour.userAccessible)
        #expect(machine.memory.load(UInt64.self, at: 0x60_0010) == patternQword(0x60_0010))
        #expect(machine.memory.load(UInt64.self, at: run.resolutions[0].to + 0x10) == 0xFEED_FACE_CAFE_BEEF)
        // The directory entries edited by hand still deny user mode; the leaves below still allow it.
        #expect(try machine.addressSpace.lookup(0x7000_0000)?.userAccessible == false)
        #expect(try machine.addressSpace.lookup(0x7F80_0000_0000)?.userAccessible == false)
    }

    @Test("the boot-information flag runs every probe at CPL 3: the same reports")
    func everyProbeByFlag() throws {
        let scenario = try Scenarios.amd64UserMode(leafSizes: [.size2M]).everyProbeInUserModeByFlag()
        #expect(scenario.cases.allSatisfy { !$0.probe.userMode } && scenario.cases.count > 20)
        let run = try scenario.check(on: .kvm)
        #expect(run.resolutions.map(\.virtualAddress) == [0x6000_0000])
    }
}

@Suite("user mode on QEMU's software MMU (i686, amd64 1 GiB leaves)", .enabled(if: qemuTestsRun, qemuReason))
struct UserModeQEMUTests {
    @Test("i686 CPL 3 probes over 4 KiB and 4 MiB leaves", arguments: [false, true])
    func i686(large: Bool) throws {
        let scenario = try Scenarios.i686UserMode(large: large)
        let image = try scenario.makeImage()
        for va: UInt64 in [0xC000_0000, 0x5000_0000] {
            #expect(try image.addressSpace.lookup(va)?.leafSize == (large ? .size4M : .size4K), "\(hex(va))")
        }
        let run = try scenario.check(on: .qemu)
        let qemu = try #require(run.qemu)
        // Every write fault on a present page asked the host, with the error code (U/S set for CPL 3); only
        // the copy-on-write user page for the user write and the supervisor one for the ring-0 write were
        // copied.
        let requests = qemu.console.copyOnWriteRequests
        #expect(
            requests.map(\.description) == [
                "C c0800010 7", "C 40000000 7", "C 40001000 7", "C 50000010 7", "C 61000000 7", "C 61000000 3",
                "C 70001000 7",
            ])
        #expect(qemu.resolutions.map { $0?.virtualAddress } == [nil, nil, nil, 0x5000_0000, nil, 0x6100_0000, nil])
        let copied = try #require(try run.image.addressSpace.lookup(0x5000_0000))
        #expect(copied.userAccessible && copied.kind == .readWriteExecute && copied.leafSize == .size4K)
    }

    @Test("i686: the boot-information flag runs every probe at CPL 3")
    func i686ByFlag() throws {
        try Scenarios.i686UserMode(large: false).everyProbeInUserModeByFlag().check(on: .qemu)
    }

    @Test("amd64 CPL 3 probes over 1 GiB leaves")
    func amd64GigabyteLeaves() throws {
        let scenario = Scenarios.amd64UserModeHuge()
        let image = try scenario.makeImage()
        for va: UInt64 in [0x4000_0000, 0x8000_0000, 0xC000_0000, 0x1_0000_0000, 0x1_8000_0000, 0x80_0000_0000] {
            #expect(try image.addressSpace.lookup(va)?.leafSize == .size1G, "\(hex(va))")
        }
        let run = try scenario.check(on: .qemu)
        #expect(run.resolutions.map(\.virtualAddress) == [0x1_8050_0000])
        #expect(try run.image.addressSpace.lookup(0x1_8050_1000)?.leafSize == .size4K)  // the leaf was split
    }

    @Test("the KVM user-mode scenario gives the same reports on QEMU (amd64, 2 MiB leaves)")
    func amd64AsOnKVM() throws {
        let run = try Scenarios.amd64UserMode(leafSizes: [.size2M]).check(on: .qemu)
        #expect(run.resolutions.map(\.virtualAddress) == [0x6000_0000, 0x6200_0000])
    }
}
