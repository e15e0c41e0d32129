import MicroVM
import PageTables
import Testing

/// i686 ELF guests cannot run on this machine's KVM (kvm_pvm has no 32-bit paging), so hello32.elf is booted
/// under QEMU's software MMU from the very memory image the host built (``BootImage``), through
/// Guests/qemu/tramp32.bin, which enters at the entry point of the version-2 boot-information block. The
/// guest's #PF handler prints the error code, CR2 and EIP, then ends QEMU with status (0x21 << 1) | 1.
@Suite("QEMU oracle: i686 ELF guests on an emulated MMU", .enabled(if: qemuTestsRun, qemuReason))
struct ELFQEMUTests {
    /// Boots hello32.elf from the entry at `offset` of its entry table with `leaves`.
    func run(entryOffset offset: UInt64 = 0, leaves: AllowedLeafSizes = []) throws -> QEMURun {
        let configuration = try elfConfiguration("hello32", entry: 0xC000_0000 + offset)
        let image = try BootImage(configuration: configuration, allowedLeafSizes: leaves)
        return try runOnQEMU(image)
    }

    @Test(
        "hello32.elf: upper-gigabyte code, bss zero, the version-2 boot information",
        arguments: [AllowedLeafSizes.smallPagesOnly, [.size4M]])
    func hello(_ leaves: AllowedLeafSizes) throws {
        let run = try run(leaves: leaves)
        #expect(
            run.standardOutput == """
                hello from an ELF guest (i686)
                data ok, bss zero, data and bss writable
                seg c0000000 00100000 00001000 12
                seg c0001000 00101000 00001000 10
                seg c0002000 00102000 00003000 11
                bootinfo version 2 entry c0000000 segments 3

                """)
        #expect(run.status == 1, "stderr: \(run.standardError)")  // the guest wrote 0 to port 0xF4
    }

    @Test("a write to .rodata is a page fault: present, write (error 3), CR2 the read-only page")
    func writeRodata() throws {
        let run = try run(entryOffset: 0x10)
        #expect(run.standardOutput.hasPrefix("writing .rodata\npage fault: error 00000003 cr2 c0001000 eip c00"))
        #expect(run.status == 0x43, "stderr: \(run.standardError)")
    }

    @Test("a write to the identity alias of .text's frame faults too")
    func writeTextAlias() throws {
        let run = try run(entryOffset: 0x30, leaves: [.size4M])
        #expect(
            run.standardOutput.hasPrefix(
                "writing the identity alias of .text\npage fault: error 00000003 cr2 00100000 eip c00"))
        #expect(run.status == 0x43)
    }

    @Test("a write to .text faults")
    func writeText() throws {
        let run = try run(entryOffset: 0x40)
        #expect(run.standardOutput.hasPrefix("writing .text\npage fault: error 00000003 cr2 c0000000 eip c00"))
        #expect(run.status == 0x43)
    }

    @Test("i686 paging has no NX: a fetch from .data runs (the documented limit of W^X on i686)")
    func fetchDataRuns() throws {
        let run = try run(entryOffset: 0x20)
        #expect(run.standardOutput == "executing .data\nexecuted .data: i686 has no NX\n")
        #expect(run.status == 1)
    }
}
