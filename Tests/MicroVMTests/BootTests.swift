import Foundation
import KVMKit
@_spi(Testing) import MicroVM
import PageTables
import Testing

@Suite("boot real guests on KVM (amd64)", .enabled(if: kvmUsable, kvmReason))
struct AMD64BootTests {
    @Test("hello64 prints its line and halts")
    func hello() throws {
        let machine = try Machine(configuration: try configuration("hello64"))
        #expect(try machine.run() == .halted)
        #expect(machine.consoleOutput == Array("hello from microvm (amd64)\n".utf8))
        // One exit per console byte, then HLT.
        #expect(machine.exitCount == 28)
    }

    @Test("exit64 ends with the status written to port 0xF4")
    func exitPort() throws {
        let machine = try Machine(configuration: try configuration("exit64"))
        #expect(try machine.run() == .exited(status: 42))
        #expect(machine.consoleOutput == Array("exiting with 42\n".utf8))
    }

    @Test("triple64: a triple fault names RIP, CR2, CR3 and the translation of RIP")
    func tripleFault() throws {
        let machine = try Machine(configuration: try configuration("triple64"))
        let root = machine.addressSpace.rootPhysicalAddress
        let error = #expect(throws: RunError.self) { try machine.run() }
        guard case .fault(let fault)? = error else {
            Issue.record("expected a fault, got \(String(describing: error))")
            return
        }
        // The fault as data: kind, RIP, CR2, CR3 and the engine's translations of both addresses.
        #expect(fault.kind == .tripleFault)
        #expect(fault.rip == 0x10_001C)
        #expect(fault.cr2 == 0)
        #expect(fault.cr3 == root)
        #expect(fault.cr2Translation == .notMapped)
        guard case .mapped(let rip)? = fault.ripTranslation else {
            Issue.record("RIP should be mapped")
            return
        }
        #expect(rip.physicalAddress == 0x10_001C && rip.kind == .readWriteExecute && rip.leafSize == .size4K)
        // And the one line a person reads.
        #expect(
            fault.description
                == "triple fault: RIP 0x10001c (-> 0x10001c, writable, 4 KiB leaf), CR2 0x0 (not mapped), CR3 \(hex(root))"
        )
        #expect(machine.consoleOutput == Array("about to triple fault\n".utf8))
    }

    @Test("nullread64: the null-pointer hint")
    func nullRead() throws {
        let machine = try Machine(configuration: try configuration("nullread64"))
        do {
            _ = try machine.run()
            Issue.record("expected a triple fault")
        } catch {
            #expect(
                error.description.hasPrefix(
                    "triple fault: RIP 0x100021 (-> 0x100021, writable, 4 KiB leaf), CR2 0x10 (not mapped)"))
            #expect(error.description.hasSuffix("(page 0 is never mapped: a null pointer?)"))
        }
    }

    @Test("loop64 is stopped by the timeout")
    func timeout() throws {
        var config = try configuration("loop64")
        config.timeout = .milliseconds(200)
        let machine = try Machine(configuration: config)
        let start = ContinuousClock.now
        do {
            _ = try machine.run()
            Issue.record("expected a timeout")
        } catch {
            guard case .timeout(let seconds, let rip, _) = error else {
                Issue.record("expected a timeout, got \(error)")
                return
            }
            #expect(seconds == 0.2)
            #expect(rip == 0x10_0015)
        }
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(machine.consoleOutput == Array("looping\n".utf8))
    }

    @Test("mmio64: a write to unbacked physical memory ends the run with its address and value")
    func mmio() throws {
        var config = try configuration("mmio64")
        config.extraMappings = [.identity(0xD000_0000, length: 0x1000, kind: .readWrite)]
        let machine = try Machine(configuration: config)
        let error = #expect(throws: RunError.self) { try machine.run() }
        guard case .fault(let fault)? = error else { return }
        #expect(fault.kind == .unbackedMemory(address: 0xD000_0000, size: 1, writeValue: 0xAB))
        #expect(fault.rip == 0x10_001D)
        #expect(machine.consoleOutput == Array("mmio\n".utf8))
    }

    @Test("mmio64 without its mapping: the page fault becomes a triple fault at CR2 0xd0000000")
    func mmioUnmapped() throws {
        let machine = try Machine(configuration: try configuration("mmio64"))
        do {
            _ = try machine.run()
            Issue.record("expected a triple fault")
        } catch {
            #expect(error.description.contains("CR2 0xd0000000 (not mapped)"))
        }
    }

    @Test("port64: an unknown port ends the run")
    func unknownPort() throws {
        let machine = try Machine(configuration: try configuration("port64"))
        let error = #expect(throws: RunError.self) { try machine.run() }
        guard case .fault(let fault)? = error else { return }
        #expect(fault.kind == .unknownPort(port: 0x80, size: 1, writeValue: 0x11, count: 1))
        #expect(fault.rip == 0x10_001C)
        #expect(fault.description == "unknown port: out of 1 byte (0x11) to port 0x80 at RIP 0x10001c")
    }

    @Test("bootinfo64 reads the boot-information block and CR3 as the host wrote them")
    func bootInfo() throws {
        let machine = try Machine(configuration: try configuration("bootinfo64"))
        #expect(try machine.run() == .halted)
        let root = hex(machine.addressSpace.rootPhysicalAddress, digits: 16, prefix: "")
        let expected = "magic=424d564d ram=0000000001000000 cr3=\(root) load=0000000000100000\ncr3reg=\(root)\n"
        #expect(String(decoding: machine.consoleOutput, as: UTF8.self) == expected)
        #expect(machine.bootInfo.tableRoot == machine.addressSpace.rootPhysicalAddress)
    }

    @Test(
        "the tables use 2 MiB leaves where aligned, and 4 KiB only with --page-size 4k",
        arguments: [MachineConfiguration.PageSizePolicy.automatic, .small])
    func pageSizes(_ policy: MachineConfiguration.PageSizePolicy) throws {
        var config = try configuration("hello64")
        config.pageSizePolicy = policy
        let machine = try Machine(configuration: config)
        let leaf = try #require(try machine.addressSpace.lookup(0x40_0000))
        #expect(leaf.leafSize == (policy == .automatic ? .size2M : .size4K))
        #expect(try machine.run() == .halted)
    }

    @Test(
        "KVM_TRANSLATE agrees with the engine on every page, mapped or not, after boot",
        arguments: [MachineConfiguration.PageSizePolicy.automatic, .small])
    func translationsAgree(_ policy: MachineConfiguration.PageSizePolicy) throws {
        var config = try configuration("hello64")
        config.pageSizePolicy = policy
        config.extraMappings = [
            Mapping(physicalBase: 0x20_0000, virtualBase: 0x4000_0000, length: 0x20_0000, kind: .readOnly),
            Mapping(physicalBase: 0x30_0000, virtualBase: 0xFFFF_8000_0000_0000, length: 0x1_0000, kind: .readWrite),
            Mapping(
                physicalBase: 0x40_0000, virtualBase: 0x1_0000_0000, length: 0x4000,
                kind: .copyOnWrite(executable: false)),
        ]
        let machine = try Machine(configuration: config)
        #expect(try machine.run() == .halted)
        var addresses: [UInt64] = Array(stride(from: UInt64(0), to: 16 << 20, by: 4096))
        addresses += stride(from: UInt64(0x4000_0000), to: 0x4030_0000, by: 4096)
        addresses += stride(from: UInt64(0xFFFF_8000_0000_0000), to: 0xFFFF_8000_0002_0000, by: 4096)
        addresses += stride(from: UInt64(0x1_0000_0000), to: 0x1_0000_8000, by: 4096)
        for va in addresses {
            let cpu = try machine.vcpuTranslate(va + 0x123)
            let engine = try machine.addressSpace.lookup(va + 0x123)
            #expect(cpu.valid == (engine != nil), "valid at \(hex(va))")
            if let engine, cpu.valid {
                #expect(cpu.physicalAddress == engine.physicalAddress, "pa at \(hex(va))")
                // x86 KVM fills kvm_translation.writeable with 1 whatever the tables say, so writability is
                // proven by the probe guest's faults instead; pin the quirk so a change is noticed.
                #expect(cpu.writeable)
            }
        }
    }

    @Test("1,000 VMs one after another leak no file descriptor and no memory")
    func thousandMachines() throws {
        // In a process of its own (microvm-soak), so tests running in parallel cannot blur the counts.
        let result = try runProgram("microvm-soak", ["Guests/hello64.bin", "1000"])
        #expect(result.status == 0, "\(result.stderr)")
        let fields = result.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" })
        try #require(fields.count == 9, "\(result.stdout)")
        let fdsBefore = Int(fields[1])!, fdsAfter = Int(fields[2])!
        let rssBefore = Int(fields[4])!, rssAfter = Int(fields[5])!
        #expect(fdsAfter == fdsBefore)
        #expect(fields[7] == fields[8], "threads: \(result.stdout)")
        // A leaked machine keeps at least its touched pages (image, tables, GDT, stack: > 40 KiB): 1,000 leaks
        // would add > 40 MiB. Allow 2 MiB of allocator noise.
        #expect(rssAfter <= rssBefore + 2 << 20, "resident memory grew from \(rssBefore) to \(rssAfter) bytes")
    }

    @Test("10,000 calls (with a reset every 100) leak no descriptor, memory or thread")
    func callsLeakNothing() throws {
        let result = try runProgram("microvm-soak", ["--calls", "Guests/calls64.bin", "10000"])
        #expect(result.status == 0, "\(result.stderr)")
        let fields = result.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" })
        try #require(fields.count == 9, "\(result.stdout)")
        #expect(fields[1] == fields[2], "descriptors: \(result.stdout)")
        #expect(fields[7] == fields[8], "threads: \(result.stdout)")
        let rssBefore = Int(fields[4])!, rssAfter = Int(fields[5])!
        // microvm-soak warms up first (25,000 calls, which also write every page of the dirty ring); after
        // that a leak of even 50 bytes a call would show as 500 KB.
        #expect(rssAfter <= rssBefore + 512 << 10, "resident memory grew from \(rssBefore) to \(rssAfter) bytes")
    }
}

@Suite("boot i686 guests", .enabled(if: kvmUsable, kvmReason))
struct I686BootTests {
    @Test(
        "hello32 prints its line and halts",
        .enabled(if: kvmRuns32BitPaging, "this KVM cannot run 32-bit paging (kvm_pvm); the refusal is tested instead"))
    func hello() throws {
        let machine = try Machine(configuration: try configuration("hello32", .i686))
        #expect(try machine.run() == .halted)
        #expect(machine.consoleOutput == Array("hello from microvm (i686)\n".utf8))
    }

    @Test(
        "bootinfo32 reads the block and CR3",
        .enabled(if: kvmRuns32BitPaging, "this KVM cannot run 32-bit paging (kvm_pvm); the refusal is tested instead"))
    func bootInfo() throws {
        let machine = try Machine(configuration: try configuration("bootinfo32", .i686))
        #expect(try machine.run() == .halted)
        let root = machine.addressSpace.rootPhysicalAddress
        let expected =
            "magic=424d564d ram=0000000001000000 cr3=\(hex(root, digits: 16, prefix: "")) load=0000000000100000\ncr3reg=\(hex(root, digits: 8, prefix: ""))\n"
        #expect(String(decoding: machine.consoleOutput, as: UTF8.self) == expected)
    }

    @Test(
        "a KVM that drops CR0.PG in 32-bit mode is refused with one clear line",
        .enabled(if: !kvmRuns32BitPaging, "this KVM runs 32-bit paging: the real boot is tested instead"))
    func refusal() throws {
        #expect(
            throws: MachineError.pagingModeUnsupported(
                architecture: .i686,
                detail:
                    "kvm_pvm drops CR0.PG for 32-bit protected mode (no 32-bit paging); run i686 guests on a host whose /dev/kvm is served by kvm_intel or kvm_amd"
            )
        ) {
            _ = try Machine(configuration: try configuration("hello32", .i686))
        }
    }
}
