import Foundation
import KVMKit
@_spi(Testing) import MicroVM
import PageTables
import Testing

/// The probe guest on KVM: the tables the host builds are exactly the address space the guest sees.
@Suite("probes inside a running amd64 guest", .enabled(if: kvmUsable, kvmReason))
struct AMD64ProbeTests {
    /// The host's large leaves on KVM: none (`--page-size 4k`), or what its CPUID allows (here 2 MiB).
    static let leafPolicies: [AllowedLeafSizes] = [[], [.size2M]]

    @Test("every probe reports exactly what the tables say", arguments: leafPolicies)
    func reports(_ leafSizes: AllowedLeafSizes) throws {
        let run = try Scenarios.amd64OnKVM(leafSizes: leafSizes).check(on: .kvm)
        let machine = try #require(run.machine)
        // Writes landed at their physical addresses.
        #expect(machine.memory.load(UInt64.self, at: 0x20_0008) == 0xCAFE_F00D)
        #expect(machine.memory.load(UInt64.self, at: 0x30_1000) == 0x0123_4567_89AB_CDEF)
    }

    @Test(
        "copy-on-write: the host copies the frame, remaps the page writable, and keeps the original",
        arguments: leafPolicies)
    func copyOnWrite(_ leafSizes: AllowedLeafSizes) throws {
        let run = try Scenarios.amd64OnKVM(leafSizes: leafSizes).check(on: .kvm)
        let machine = try #require(run.machine)
        try #require(machine.copyOnWriteResolutions.count == 1)
        let resolution = machine.copyOnWriteResolutions[0]
        #expect(resolution.virtualAddress == 0x6000_0000)
        #expect(resolution.from == 0x40_0000)
        // The original frame is unchanged; the copy holds the write and the rest of the page.
        #expect(machine.memory.load(UInt64.self, at: 0x40_0010) == 0x5555_5555_5555_5555)
        #expect(machine.memory.load(UInt64.self, at: resolution.to + 0x10) == 0x7777)
        // The live tables: the page is now writable at the copy, its neighbours still copy-on-write.
        let page = try #require(try machine.addressSpace.lookup(0x6000_0010))
        #expect(page.physicalAddress == resolution.to + 0x10 && page.kind == .readWrite && page.leafSize == .size4K)
        let neighbour = try #require(try machine.addressSpace.lookup(0x6000_1000))
        #expect(neighbour.physicalAddress == 0x40_1000 && neighbour.kind == .copyOnWrite(executable: false))
        #expect(neighbour.leafSize == .size4K)  // the 2 MiB leaf (2 MiB policy) was split
        #expect(try machine.vcpuTranslate(0x6000_0010).physicalAddress == resolution.to + 0x10)
        // The dump shows the remap.
        #expect(
            machine.dumpTables().contains("0x0000000060000000-0x0000000060000fff -> \(hex(resolution.to, digits: 16))"))
    }

    @Test("a fault outside any probe ends the run with one page-fault line")
    func fatalPageFault() throws {
        let machine = try Machine(configuration: try configuration("probe64"), probes: [Probe(.read, 0x1000)])
        // Point the probe list at an unmapped address: the runtime faults reading it, outside any probe.
        machine.memory.store(UInt64(0x7000_0000), at: Layout.bootInfoAddress + 64)
        do {
            _ = try machine.run()
            Issue.record("expected a page fault")
        } catch {
            #expect(error.description.hasPrefix("page fault: read of 0x70000000 (not mapped) at RIP 0x10"))
            guard case .fault(let fault) = error else { return }
            #expect(fault.kind == .exception(vector: 14, errorCode: 0))
            #expect(fault.cr2 == 0x7000_0000)
            #expect(fault.cr2Translation == .notMapped)
        }
    }

    @Test("a write to a copy-on-write page without the runtime ends in a triple fault that says so")
    func copyOnWriteWithoutRuntime() throws {
        var config = try configuration("cowwrite64")
        config.extraMappings = [
            Mapping(
                physicalBase: 0x40_0000, virtualBase: 0x4000_0000, length: 0x1000, kind: .copyOnWrite(executable: false)
            )
        ]
        let machine = try Machine(configuration: config)
        do {
            _ = try machine.run()
            Issue.record("expected a triple fault")
        } catch {
            #expect(
                error.description.contains(
                    "CR2 0x40000000 (-> 0x400000, read-only, no-execute, copy-on-write, 4 KiB leaf)"))
            #expect(
                error.description.hasSuffix(
                    "(CR2 is a copy-on-write page: a write to it needs the guest's #PF handler to ask the host to resolve it)"
                ))
        }
    }
}

@Suite("page-fault lines")
struct PageFaultLineTests {
    @Test("the #PF error code becomes the access, as the issue's example")
    func lines() {
        #expect(
            GuestFault.pageFaultLine(
                errorCode: 0x3, address: 0x4000_1000, rip: 0x10_0042,
                translation: "(-> 0x201000, read-only, 4 KiB leaf)")
                == "write to 0x40001000 (-> 0x201000, read-only, 4 KiB leaf) at RIP 0x100042")
        #expect(
            GuestFault.pageFaultLine(errorCode: 0x0, address: 0x7000_0000, rip: 0x10_0010, translation: "(not mapped)")
                == "read of 0x70000000 (not mapped) at RIP 0x100010")
        #expect(
            GuestFault.pageFaultLine(
                errorCode: 0x11, address: 0x5000_0000, rip: 0x5000_0000,
                translation: "(-> 0x320000, writable, no-execute, 4 KiB leaf)")
                == "instruction fetch from 0x50000000 (-> 0x320000, writable, no-execute, 4 KiB leaf) at RIP 0x50000000"
        )
        #expect(
            GuestFault.pageFaultLine(
                errorCode: 0x6, address: 0x1000, rip: 0x40_0000,
                translation: "(-> 0x1000, writable, no-execute, 4 KiB leaf)")
                == "user write to 0x1000 (-> 0x1000, writable, no-execute, 4 KiB leaf) at RIP 0x400000")
    }
}
