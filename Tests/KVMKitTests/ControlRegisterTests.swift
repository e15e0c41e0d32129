import KVMKit
import Testing

@Suite("Control-register and EFER bits follow the Intel SDM")
struct ControlRegisterTests {
    @Test("CR0 bits")
    func cr0() {
        #expect(CR0.protectionEnable.rawValue == 1 << 0)
        #expect(CR0.monitorCoprocessor.rawValue == 1 << 1)
        #expect(CR0.numericError.rawValue == 1 << 5)
        #expect(CR0.writeProtect.rawValue == 1 << 16)
        #expect(CR0.paging.rawValue == 1 << 31)
        // The entry value of docs/layout.md: PE|MP|NE|WP|PG.
        let entry: CR0 = [.protectionEnable, .monitorCoprocessor, .numericError, .writeProtect, .paging]
        #expect(entry.rawValue == 0x8001_0023)
    }

    @Test("CR4 bits")
    func cr4() {
        #expect(CR4.pse.rawValue == 1 << 4)
        #expect(CR4.pae.rawValue == 1 << 5)
        #expect(CR4.osfxsr.rawValue == 1 << 9)
        #expect(CR4.osxmmexcpt.rawValue == 1 << 10)
        #expect(([.pae, .osfxsr, .osxmmexcpt] as CR4).rawValue == 0x620)
    }

    @Test("EFER bits")
    func efer() {
        #expect(EFER.lme.rawValue == 1 << 8)
        #expect(EFER.lma.rawValue == 1 << 10)
        #expect(EFER.nxe.rawValue == 1 << 11)
        #expect(([.lme, .lma, .nxe] as EFER).rawValue == 0xD00)
    }

    @Test("unnamed bits survive in the raw value")
    func unnamedBits() {
        let cr0 = CR0(rawValue: 0x6000_0010)  // CD | NW | ET, the reset value
        #expect(cr0.contains(.cacheDisable) && cr0.contains(.notWriteThrough) && cr0.contains(.extensionType))
        #expect(CR0(rawValue: 1 << 40).rawValue == 1 << 40)
    }
}
