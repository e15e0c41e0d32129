import CKVM
import Testing

@testable import KVMKit

@Suite("Register and CPUID conversions round-trip through the kernel structs")
struct ConversionTests {
    @Test("kvm_regs <-> Registers")
    func registers() {
        var registers = Registers()
        registers.rax = 1; registers.rbx = 2; registers.rcx = 3; registers.rdx = 4
        registers.rsi = 5; registers.rdi = 6; registers.rsp = 7; registers.rbp = 8
        registers.r8 = 9; registers.r9 = 10; registers.r10 = 11; registers.r11 = 12
        registers.r12 = 13; registers.r13 = 14; registers.r14 = 15; registers.r15 = 16
        registers.rip = 0x1000; registers.rflags = 0x202
        let kernel = registers.kernelValue
        #expect(kernel.rax == 1 && kernel.r15 == 16 && kernel.rip == 0x1000 && kernel.rflags == 0x202)
        #expect(Registers(kernel) == registers)
    }

    @Test("kvm_sregs <-> SpecialRegisters keeps every field and the interrupt bitmap")
    func specialRegisters() {
        var kernel = kvm_sregs()
        kernel.cs = kvm_segment(
            base: 0x10, limit: 0xFFFF_FFFF, selector: 0x08, type: 11, present: 1, dpl: 0, db: 0, s: 1, l: 1,
            g: 1, avl: 1, unusable: 0, padding: 0)
        kernel.ss.unusable = 1
        kernel.tr.type = 11
        kernel.gdt.base = 0x1000
        kernel.gdt.limit = 23
        kernel.idt.limit = 0xFFFF
        kernel.cr0 = 0x8001_0033
        kernel.cr2 = 0xDEAD
        kernel.cr3 = 0x7F_F000
        kernel.cr4 = 0x620
        kernel.cr8 = 3
        kernel.efer = 0xD00
        kernel.apic_base = 0xFEE0_0900
        kernel.interrupt_bitmap = (1, 1 << 63, 0, 5)

        let registers = SpecialRegisters(kernel)
        #expect(
            registers.cs
                == Segment(
                    base: 0x10, limit: 0xFFFF_FFFF, selector: 0x08, type: 11, present: true, s: true, l: true, g: true,
                    avl: true))
        #expect(registers.ss.unusable)
        #expect(registers.gdt == DescriptorTable(base: 0x1000, limit: 23))
        #expect(
            registers.cr0 == [
                .protectionEnable, .monitorCoprocessor, .numericError, .writeProtect, .paging,
                .extensionType,
            ])
        #expect(registers.efer == [.lme, .lma, .nxe])
        #expect(registers.cr4 == [.pae, .osfxsr, .osxmmexcpt])
        #expect(registers.apicBase == 0xFEE0_0900)

        let back = registers.kernelValue
        // SAFETY: both are trivial C structs of the same type; comparing their bytes compares every field
        // (kvm_sregs has no implicit padding, and the explicit padding is zero in both).
        let same = withUnsafeBytes(of: kernel) { a in withUnsafeBytes(of: back) { b in a.elementsEqual(b) } }
        #expect(same)
    }

    @Test("CPUID entries survive the kvm_cpuid2 buffer")
    func cpuidBuffer() throws {
        let entries = [
            CPUIDEntry(function: 0, eax: 0x16, ebx: 0x756E_6547),
            CPUIDEntry(function: 7, index: 1, flags: 1, ebx: 0xFF),
            CPUIDEntry(function: 0x8000_0001, ecx: 1, edx: 1 << 26),
        ]
        var seenCount: UInt32 = 0
        let back = try CPUIDEntry.withKernelBuffer(capacity: 8, presenting: entries) { header in
            seenCount = header.load(as: UInt32.self)  // nent
        }
        #expect(seenCount == 3)
        #expect(back == entries)
    }

    @Test("CPUID feature helpers read the documented bits")
    func cpuidFeatures() {
        let none: [CPUIDEntry] = []
        #expect(!none.supportsPage1GB && !none.supportsPSE && !none.supportsNX)
        let all = [
            CPUIDEntry(function: 1, edx: 1 << 3),
            CPUIDEntry(function: 0x8000_0001, edx: 1 << 26 | 1 << 20),
        ]
        #expect(all.supportsPage1GB && all.supportsPSE && all.supportsNX)
        let onlyNX = [CPUIDEntry(function: 0x8000_0001, edx: 1 << 20), CPUIDEntry(function: 1, edx: ~(1 << 3))]
        #expect(!onlyNX.supportsPage1GB && onlyNX.supportsNX && !onlyNX.supportsPSE)
    }

    @Test("entry(function:index:) honours the significant-index flag")
    func entryLookup() {
        let entries = [
            CPUIDEntry(function: 7, index: 0, flags: 1, ebx: 10),
            CPUIDEntry(function: 7, index: 1, flags: 1, ebx: 11),
            CPUIDEntry(function: 1, index: 0, flags: 0, ebx: 12),
        ]
        #expect(entries.entry(function: 7, index: 1)?.ebx == 11)
        #expect(entries.entry(function: 7)?.ebx == 10)
        #expect(entries.entry(function: 7, index: 2) == nil)
        #expect(entries.entry(function: 1, index: 5)?.ebx == 12)
        #expect(entries.entry(function: 2) == nil)
    }
}
