import CKVM
import Testing

@testable import KVMKit

/// The bytes of a kernel struct, as the kernel sees them.
private func rawBytes<K>(of kernel: K) -> [UInt8] {
    // SAFETY: a read-only view of a local copy of a trivial C struct.
    withUnsafeBytes(of: kernel) { Array($0) }
}

/// Each vCPU-state encoding is the kernel struct's layout: these fill the C structs by their own field
/// names (so the offsets come from the C compiler, not from KVMKit), convert, and compare bytes.
@Suite("vCPU state byte encodings equal the kernel layouts and round-trip")
struct EncodingTests {
    @Test("VCPUEvents: 64 bytes, every field at its kvm_vcpu_events offset")
    func events() {
        var kernel = kvm_vcpu_events()
        kernel.exception.injected = 1
        kernel.exception.nr = 14
        kernel.exception.has_error_code = 1
        kernel.exception.pending = 1
        kernel.exception.error_code = 0xDEAD_BEEF
        kernel.interrupt.injected = 1
        kernel.interrupt.nr = 0x20
        kernel.interrupt.soft = 1
        kernel.interrupt.shadow = 2
        kernel.nmi.injected = 1
        kernel.nmi.pending = 1
        kernel.nmi.masked = 1
        kernel.sipi_vector = 0x9A
        kernel.flags = 0x3F
        kernel.smi.smm = 1
        kernel.smi.pending = 1
        kernel.smi.smm_inside_nmi = 1
        kernel.smi.latched_init = 1
        kernel.triple_fault.pending = 1
        kernel.exception_has_payload = 1
        kernel.exception_payload = 0x1122_3344_5566_7788

        let events = VCPUEvents(kernel)
        #expect(
            events.exception
                == .init(injected: true, vector: 14, hasErrorCode: true, pending: true, errorCode: 0xDEAD_BEEF))
        #expect(events.interrupt == .init(injected: true, vector: 0x20, soft: true, shadow: 2))
        #expect(events.nmi == .init(injected: true, pending: true, masked: true))
        #expect(events.smi == .init(smm: true, pending: true, smmInsideNMI: true, latchedInit: true))
        #expect(events.valid == [.nmiPending, .sipiVector, .shadow, .smm, .payload, .tripleFault])
        #expect(events.sipiVector == 0x9A && events.tripleFaultPending && events.exceptionHasPayload)
        #expect(events.exceptionPayload == 0x1122_3344_5566_7788)

        #expect(events.bytes.count == VCPUEvents.byteCount)
        #expect(events.bytes == rawBytes(of: kernel))
        #expect(VCPUEvents(bytes: events.bytes) == events)
        #expect(rawBytes(of: events.kernelValue) == rawBytes(of: kernel))
        // The documented offsets, independently: error_code little-endian at 4, payload at 56.
        #expect(Array(events.bytes[4..<8]) == [0xEF, 0xBE, 0xAD, 0xDE])
        #expect(events.bytes[55] == 1 && events.bytes[56] == 0x88 && events.bytes[63] == 0x11)
        #expect(VCPUEvents(bytes: Array(repeating: 0, count: 63)) == nil)
        #expect(VCPUEvents(bytes: Array(repeating: 0, count: 64)) == VCPUEvents())
    }

    @Test("DebugRegisters: 128 bytes in kvm_debugregs order")
    func debugRegisters() {
        var kernel = kvm_debugregs()
        kernel.db = (0x1000, 0x2000, 0x3000, 0x4000)
        kernel.dr6 = 0xFFFF_0FF0
        kernel.dr7 = 0x0400
        let registers = DebugRegisters(kernel)
        #expect(
            registers.dr0 == 0x1000 && registers.dr3 == 0x4000 && registers.dr6 == 0xFFFF_0FF0 && registers.dr7 == 0x400
        )
        #expect(registers.bytes == rawBytes(of: kernel))
        #expect(registers.bytes.count == 128)
        #expect(DebugRegisters(bytes: registers.bytes) == registers)
        #expect(DebugRegisters(bytes: []) == nil)
    }

    @Test("FPUState: 416 bytes in kvm_fpu order, register files included")
    func fpu() {
        var kernel = kvm_fpu()
        // SAFETY: writes inside the two byte arrays of a local struct.
        withUnsafeMutableBytes(of: &kernel.fpr) { for i in 0..<128 { $0[i] = UInt8(i) } }
        withUnsafeMutableBytes(of: &kernel.xmm) { for i in 0..<256 { $0[i] = UInt8(255 - i) } }
        kernel.fcw = 0x37F
        kernel.fsw = 0x1234
        kernel.ftwx = 0x81
        kernel.last_opcode = 0x7FF
        kernel.last_ip = 0xAAAA_0000
        kernel.last_dp = 0xBBBB_0000
        kernel.mxcsr = 0x1F80
        let state = FPUState(kernel)
        #expect(state.x87Registers[5] == 5 && state.xmmRegisters[0] == 255 && state.mxcsr == 0x1F80)
        #expect(state.fcw == 0x37F && state.ftwx == 0x81 && state.lastIP == 0xAAAA_0000)
        #expect(state.bytes == rawBytes(of: kernel))
        #expect(FPUState(bytes: state.bytes) == state)
        #expect(rawBytes(of: state.kernelValue) == rawBytes(of: kernel))
        #expect(FPUState(bytes: Array(repeating: 0, count: 417)) == nil)
    }

    @Test("ExtendedControlRegisters: 392 bytes, the count first, unused slots zero")
    func xcrs() {
        var kernel = kvm_xcrs()
        kernel.nr_xcrs = 2
        kernel.xcrs.0 = kvm_xcr(xcr: 0, reserved: 0, value: 0x7)
        kernel.xcrs.1 = kvm_xcr(xcr: 1, reserved: 0, value: 0x1)
        let registers = ExtendedControlRegisters(kernel)
        #expect(registers.registers == [.init(index: 0, value: 7), .init(index: 1, value: 1)])
        #expect(registers.bytes == rawBytes(of: kernel))
        #expect(ExtendedControlRegisters(bytes: registers.bytes) == registers)
        var tooMany = registers.bytes
        tooMany[0] = 17  // more than KVM_MAX_XCRS
        #expect(ExtendedControlRegisters(bytes: tooMany) == nil)
        #expect(ExtendedControlRegisters(bytes: Array(registers.bytes.dropLast())) == nil)
    }

    @Test("ModelSpecificRegisters: a kvm_msrs header and 16-byte entries")
    func msrs() {
        let list = ModelSpecificRegisters([
            MSREntry(index: 0xC000_0080, value: 0xD01), MSREntry(index: 0x10, value: 0x1_0000_0000),
        ])
        let bytes = list.bytes
        #expect(bytes.count == 8 + 2 * 16)
        #expect(Array(bytes[0..<8]) == [2, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[8..<24]) == [0x80, 0, 0, 0xC0, 0, 0, 0, 0, 0x01, 0x0D, 0, 0, 0, 0, 0, 0])
        #expect(MemoryLayout<kvm_msrs>.size == 8 && MemoryLayout<kvm_msr_entry>.stride == 16)
        #expect(ModelSpecificRegisters(bytes: bytes) == list)
        #expect(list[0x10] == 0x1_0000_0000 && list[0x11] == nil)
        #expect(ModelSpecificRegisters(bytes: Array(bytes.dropLast())) == nil)
        var wrongCount = bytes
        wrongCount[0] = 3
        #expect(ModelSpecificRegisters(bytes: wrongCount) == nil)
        #expect(ModelSpecificRegisters(bytes: ModelSpecificRegisters().bytes) == ModelSpecificRegisters())
    }

    @Test("XSaveArea: the region itself, MXCSR at 24 and XSTATE_BV at 512")
    func xsave() {
        var region = [UInt8](repeating: 0, count: 4096)
        region[24] = 0x80; region[25] = 0x1F
        region[512] = 0x3
        var area = XSaveArea(bytes: region)!
        #expect(area.bytes == region && area.mxcsr == 0x1F80 && area.xstateBV == 3)
        area.mxcsr = 0x1FA0
        #expect(area.bytes[24] == 0xA0 && area.bytes[25] == 0x1F)
        #expect(XSaveArea(bytes: Array(repeating: 0, count: 4095)) == nil)
        #expect(XSaveArea(bytes: Array(repeating: 0, count: 4098)) == nil)
        #expect(XSaveArea(bytes: Array(repeating: 0, count: 8192))?.bytes.count == 8192)
        #expect(MemoryLayout<kvm_xsave>.size == 4096)
    }

    @Test("Registers: 144 bytes in kvm_regs order")
    func registers() {
        var registers = Registers()
        registers.rax = 1; registers.rbx = 2; registers.rcx = 3; registers.rdx = 4
        registers.rsi = 5; registers.rdi = 6; registers.rsp = 7; registers.rbp = 8
        registers.r8 = 9; registers.r9 = 10; registers.r10 = 11; registers.r11 = 12
        registers.r12 = 13; registers.r13 = 14; registers.r14 = 15; registers.r15 = 16
        registers.rip = 0xFFFF_8000_0000_1000; registers.rflags = 0x202
        #expect(registers.bytes == rawBytes(of: registers.kernelValue))
        #expect(Registers(bytes: registers.bytes) == registers)
        #expect(Registers(bytes: [1]) == nil)
    }

    @Test("SpecialRegisters: 312 bytes in kvm_sregs order, interrupt bitmap included")
    func specialRegisters() {
        var kernel = kvm_sregs()
        kernel.cs = kvm_segment(
            base: 0x10, limit: 0xFFFF_FFFF, selector: 0x08, type: 11, present: 1, dpl: 3, db: 0, s: 1, l: 1,
            g: 1, avl: 1, unusable: 0, padding: 0)
        kernel.ldt.unusable = 1
        kernel.tr.type = 11
        kernel.gdt.base = 0x1000
        kernel.gdt.limit = 23
        kernel.idt.limit = 0xFFF
        kernel.cr0 = 0x8005_0033
        kernel.cr2 = 0xDEAD
        kernel.cr3 = 0x7F_F000
        kernel.cr4 = 0x620
        kernel.cr8 = 3
        kernel.efer = 0xD00
        kernel.apic_base = 0xFEE0_0900
        kernel.interrupt_bitmap = (1, 1 << 63, 0, 5)
        let registers = SpecialRegisters(kernel)
        #expect(registers.bytes == rawBytes(of: kernel))
        #expect(SpecialRegisters(bytes: registers.bytes) == registers)
        #expect(SpecialRegisters(bytes: Array(repeating: 0, count: 311)) == nil)
    }
}
