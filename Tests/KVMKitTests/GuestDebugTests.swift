import CKVM
import Testing

@testable import KVMKit

@Suite("Guest-debug control and DR7 encoding (Intel SDM Vol. 3B §18.2.4)")
struct GuestDebugTests {
    @Test("control bits: enable plus one bit per feature in use")
    func control() {
        #expect(GuestDebug().control == 0x1)
        #expect(GuestDebug(singleStep: true).control == 0x3)
        #expect(GuestDebug(softwareBreakpoints: true).control == 0x1_0001)
        #expect(GuestDebug(hardwareBreakpoints: [.execute(0x1000)]).control == 0x2_0001)
        #expect(
            GuestDebug(singleStep: true, softwareBreakpoints: true, hardwareBreakpoints: [.execute(0)]).control
                == 0x3_0003)
    }

    @Test("no hardware breakpoints: DR7 is zero")
    func noBreakpoints() {
        #expect(GuestDebug(singleStep: true).dr7 == 0)
    }

    @Test("an execute breakpoint in DR0: G0, R/W0 = 00, LEN0 = 00, plus GE and bit 10")
    func executeBreakpoint() {
        let debug = GuestDebug(hardwareBreakpoints: [.execute(0x1234)])
        #expect(debug.dr7 == 0x0602)
        #expect(debug.kernelValue.arch.debugreg.0 == 0x1234)
        #expect(debug.kernelValue.arch.debugreg.7 == 0x0602)
    }

    @Test("watchpoints: R/Wn and LENn in each breakpoint's nibble")
    func watchpoints() {
        let debug = GuestDebug(hardwareBreakpoints: [
            .execute(0x1000),
            HardwareBreakpoint(address: 0x2000, kind: .write, length: .four),  // DR1: RW=01 LEN=11
            HardwareBreakpoint(address: 0x3000, kind: .readWrite, length: .eight),  // DR2: RW=11 LEN=10
            HardwareBreakpoint(address: 0x4002, kind: .write, length: .two),  // DR3: RW=01 LEN=01
        ])
        let expected: UInt64 =
            0x0600 | 0b10 | 0b1000 | 0b10_0000 | 0b1000_0000
            | (0b1101 << 20) | (0b1011 << 24) | (0b0101 << 28)
        #expect(debug.dr7 == expected)
        let registers = debug.kernelValue.arch.debugreg
        #expect(registers.0 == 0x1000 && registers.1 == 0x2000 && registers.2 == 0x3000 && registers.3 == 0x4002)
        #expect(registers.4 == 0 && registers.5 == 0 && registers.6 == 0)
    }

    @Test("debug exits name what stopped the vCPU")
    func debugExit() {
        let step = DebugExit(exception: 1, pc: 0x1002, dr6: 0xFFFF_4FF0, dr7: 0x400)
        #expect(step.isSingleStep && !step.isSoftwareBreakpoint && step.hardwareBreakpoint == nil)
        let hardware = DebugExit(exception: 1, pc: 0x1000, dr6: 0xFFFF_0FF2, dr7: 0x60A)
        #expect(!hardware.isSingleStep && hardware.hardwareBreakpoint == 1)
        let int3 = DebugExit(exception: 3, pc: 0x1004, dr6: 0, dr7: 0)
        #expect(int3.isSoftwareBreakpoint && int3.hardwareBreakpoint == nil)
    }

    @Test("sync-register bits match KVM_SYNC_X86_*")
    func syncBits() {
        #expect(SyncRegisterSet.registers.rawValue == 1)
        #expect(SyncRegisterSet.specialRegisters.rawValue == 2)
        #expect(SyncRegisterSet.events.rawValue == 4)
        #expect(SyncRegisterSet.all.rawValue == 7)
    }

    @Test("memory-region flags match KVM_MEM_*")
    func memoryFlags() {
        #expect(VirtualMachine.MemoryRegionFlags.logDirtyPages.rawValue == 1)
        #expect(VirtualMachine.MemoryRegionFlags.readOnly.rawValue == 2)
    }
}
