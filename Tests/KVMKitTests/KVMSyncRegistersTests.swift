import KVMKit
import Testing

/// Registers exchanged through `kvm_run` (sync regs) instead of ioctls.
@Suite(.enabled(if: kvmUsable, kvmReason))
struct KVMSyncRegistersTests {
    /// `hlt` at 0x1000; at 0x1100: `mov dx, 0x3f8; out dx, al; hlt`.
    static let code: [UInt8] = [0xF4]
    static let echo: [UInt64: [UInt8]] = [0x1100: [0xBA, 0xF8, 0x03, 0xEE, 0xF4]]

    @Test("the kernel syncs registers, special registers and events")
    func capability() throws {
        #expect(try KVMSystem().extension(.syncRegs) & 7 == 7)
    }

    @Test("after KVM_RUN the synced copies equal what the ioctls report")
    func syncedAfterRun() throws {
        let guest = try RealModeGuest(code: Self.code)
        guest.vcpu.syncedRegisterSets = .all
        #expect(guest.vcpu.syncedRegisterSets == .all)
        #expect(try guest.vcpu.run() == .halt)
        #expect(guest.vcpu.syncedRegisters().rip == 0x1001)
        #expect(guest.vcpu.syncedRegisters() == (try guest.vcpu.registers()))
        #expect(guest.vcpu.syncedSpecialRegisters() == (try guest.vcpu.specialRegisters()))
        #expect(guest.vcpu.syncedEvents() == (try guest.vcpu.events()))
    }

    @Test("staged RIP and RAX take effect on the next KVM_RUN with no KVM_SET_REGS")
    func stagedRegisters() throws {
        let guest = try RealModeGuest(code: Self.code, data: Self.echo)
        guest.vcpu.syncedRegisterSets = .registers
        #expect(try guest.vcpu.run() == .halt)

        var registers = guest.vcpu.syncedRegisters()
        registers.rip = 0x1100
        registers.rax = 0x5A
        guest.vcpu.stageRegisters(registers)
        #expect(guest.vcpu.stagedRegisterSets == .registers)
        #expect(try guest.vcpu.run() == .ioOut(port: 0x3F8, size: 1, value: 0x5A))
        #expect(guest.vcpu.stagedRegisterSets == [])  // KVM loaded them and cleared the bit
        #expect(guest.vcpu.syncedRegisters().rip == 0x1104)
        #expect(try guest.vcpu.run() == .halt)
        #expect(guest.vcpu.syncedRegisters().rip == 0x1105)
        #expect(try guest.vcpu.registers().rip == 0x1105)
    }

    @Test("staged special registers and events are loaded by KVM_RUN")
    func stagedSpecialRegistersAndEvents() throws {
        let guest = try RealModeGuest(
            code: [
                0xA0, 0x34, 0x02,  // mov al, [0x0234]   (DS-relative)
                0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
                0xEE,  // out dx, al
                0xF4,  // hlt
            ], data: [0x3234: [0x77]])
        guest.vcpu.syncedRegisterSets = .all
        var special = try guest.vcpu.specialRegisters()
        special.ds.selector = 0x300
        special.ds.base = 0x3000
        guest.vcpu.stageSpecialRegisters(special)
        guest.vcpu.stageEvents(try guest.vcpu.events())
        #expect(guest.vcpu.stagedRegisterSets == [.specialRegisters, .events])
        #expect(try guest.vcpu.run() == .ioOut(port: 0x3F8, size: 1, value: 0x77))
        #expect(guest.vcpu.stagedRegisterSets == [])
        #expect(try guest.vcpu.specialRegisters().ds.base == 0x3000)
        #expect(guest.vcpu.syncedSpecialRegisters().ds.base == 0x3000)
    }
}
