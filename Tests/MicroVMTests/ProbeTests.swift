import Foundation
import KVMKit
@_spi(Testing) import MicroVM
import PageTables
import Testing

/// The probe guest on KVM: the tables the host builds are exactly the address space the guest sees.
@Suite("probes inside a running amd64 guest", .enabled(if: kvmUsable, kvmReason))
struct AMD64ProbeTests {
    static let ok: UInt64 = 0, fault: UInt64 = 1
    static let done: UInt64 = 0xFFFF_FFFF

    static let mappings: [Mapping] = [
        Mapping(physicalBase: 0x20_0000, virtualBase: 0x4000_0000, length: 0x20_0000, kind: .readWrite),  // VA != PA, 2 MiB-able
        Mapping(physicalBase: 0x20_0000, virtualBase: 0x4020_0000, length: 0x1000, kind: .readOnly),  // read-only alias
        Mapping(physicalBase: 0x30_0000, virtualBase: 0xFFFF_8000_0000_0000, length: 0x2000, kind: .readWrite),
        Mapping(physicalBase: 0x31_0000, virtualBase: 0x1_0000_0000, length: 0x1000, kind: .readWrite),  // above 4 GiB
        Mapping(physicalBase: 0x32_0000, virtualBase: 0x5000_0000, length: 0x1000, kind: .readWrite),  // NX
        Mapping(physicalBase: 0x32_1000, virtualBase: 0x5000_1000, length: 0x1000, kind: .readExecute),
        Mapping(
            physicalBase: 0x40_0000, virtualBase: 0x6000_0000, length: 0x20_0000, kind: .copyOnWrite(executable: false)),
        Mapping(physicalBase: 0x40_0000, virtualBase: 0x6100_0000, length: 0x1000, kind: .readOnly),  // the original frame
    ]

    static let probes: [Probe] = [
        Probe(.read, 0x4000_0000),  // 0
        Probe(.write, 0x4000_0008, value: 0xCAFE_F00D),  // 1
        Probe(.read, 0x4020_0008),  // 2: the alias sees the write
        Probe(.read, 0xFFFF_8000_0000_0000),  // 3
        Probe(.write, 0xFFFF_8000_0000_1000, value: 0x0123_4567_89AB_CDEF),  // 4
        Probe(.read, 0x1_0000_0000, size: 4),  // 5
        Probe(.write, 0x4020_0000, value: 1),  // 6: read-only -> #PF P=1 W=1
        Probe(.read, 0x7000_0000),  // 7: unmapped -> #PF P=0
        Probe(.execute, 0x5000_0000),  // 8: NX -> #PF P=1 I/D=1
        Probe(.execute, 0x5000_1000),  // 9: a `ret` there
        Probe(.write, 0x6000_0010, value: 0x7777),  // 10: copy-on-write, resolved by the host
        Probe(.read, 0x6000_0010),  // 11
        Probe(.read, 0x6100_0010),  // 12: the original frame is unchanged
        Probe(.read, 0x6000_1010),  // 13: the rest of the split 2 MiB leaf is still the original
        Probe(.invalidate, 0x4000_0000),  // 14
        Probe(.read, 0x4000_0000, size: 2),  // 15
    ]

    func run(_ policy: MachineConfiguration.PageSizePolicy) throws -> Machine {
        var config = try configuration("probe64")
        config.extraMappings = Self.mappings
        config.pageSizePolicy = policy
        let machine = try Machine(configuration: config, probes: Self.probes)
        machine.memory.store(UInt64(0x1122_3344_5566_7788), at: 0x20_0000)
        machine.memory.store(UInt64(0xAABB_CCDD_EEFF_0011), at: 0x30_0000)
        machine.memory.store(UInt32(0x600D_CAFE), at: 0x31_0000)
        machine.memory.store(UInt8(0xC3), at: 0x32_0000)  // would return if it could run
        machine.memory.store(UInt8(0xC3), at: 0x32_1000)
        machine.memory.store(UInt64(0x5555_5555_5555_5555), at: 0x40_0010)
        machine.memory.store(UInt64(0x6666_6666_6666_6666), at: 0x40_1010)
        #expect(try machine.run() == .halted)
        return machine
    }

    @Test(
        "every probe reports exactly what the tables say",
        arguments: [MachineConfiguration.PageSizePolicy.automatic, .small])
    func reports(_ policy: MachineConfiguration.PageSizePolicy) throws {
        let machine = try run(policy)
        let reports = machine.reports
        try #require(reports.count == Self.probes.count + 1)
        func expectOK(_ i: Int, _ value: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(reports[i] == [UInt64(i), Self.ok, value, 0, 0, 0], sourceLocation: sourceLocation)
        }
        func expectFault(_ i: Int, errorCode: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
            let r = reports[i]
            #expect(
                Array(r.prefix(5)) == [UInt64(i), Self.fault, 14, errorCode, Self.probes[i].virtualAddress],
                sourceLocation: sourceLocation)
            if Self.probes[i].operation == .execute {
                // An instruction-fetch fault reports the target itself as RIP.
                #expect(r[5] == Self.probes[i].virtualAddress, sourceLocation: sourceLocation)
            } else {
                #expect(
                    (0x10_0000..<0x10_1000).contains(r[5]),
                    "fault RIP \(String(r[5], radix: 16)) is in the probe guest", sourceLocation: sourceLocation)
            }
        }
        expectOK(0, 0x1122_3344_5566_7788)
        expectOK(1, 0)
        expectOK(2, 0xCAFE_F00D)
        expectOK(3, 0xAABB_CCDD_EEFF_0011)
        expectOK(4, 0)
        expectOK(5, 0x600D_CAFE)
        expectFault(6, errorCode: 0x3)
        expectFault(7, errorCode: 0x0)
        expectFault(8, errorCode: 0x11)
        expectOK(9, 0)
        expectOK(10, 0)
        expectOK(11, 0x7777)
        expectOK(12, 0x5555_5555_5555_5555)
        expectOK(13, 0x6666_6666_6666_6666)
        expectOK(14, 0)
        expectOK(15, 0x7788)
        #expect(reports[16] == [Self.done, Self.ok, 0, 0, 0, 0])
        // Writes landed at their physical addresses.
        #expect(machine.memory.load(UInt64.self, at: 0x20_0008) == 0xCAFE_F00D)
        #expect(machine.memory.load(UInt64.self, at: 0x30_1000) == 0x0123_4567_89AB_CDEF)
    }

    @Test(
        "copy-on-write: the host copies the frame, remaps the page writable, and keeps the original",
        arguments: [MachineConfiguration.PageSizePolicy.automatic, .small])
    func copyOnWrite(_ policy: MachineConfiguration.PageSizePolicy) throws {
        let machine = try run(policy)
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
        #expect(neighbour.leafSize == .size4K)  // the 2 MiB leaf (auto policy) was split
        #expect(try machine.vcpuTranslate(0x6000_0010).physicalAddress == resolution.to + 0x10)
        // The dump shows the remap.
        #expect(
            machine.dumpTables().contains(
                "0x0000000060000000-0x0000000060000fff -> 0x\(String(format: "%016llx", resolution.to))"))
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
