@preconcurrency import Glibc
import KVMKit
import Synchronization
import Testing

/// Tests that need a working /dev/kvm: they boot tiny hand-assembled real-mode guests and assert the exact
/// sequence of exits.
@Suite(.enabled(if: kvmUsable, kvmReason))
struct KVMGuestTests {
    @Test("the system speaks API 12 and reports the capabilities microvm relies on")
    func system() throws {
        let system = try KVMSystem(path: "/dev/kvm")
        #expect(system.vcpuMmapSize >= 4096)
        #expect(system.extension(.userMemory) > 0)
        #expect(system.extension(.immediateExit) > 0)
        #expect(system.extension(.nrMemslots) > 0)
        #expect(system.extension(KVMCapability(rawValue: 0x7FFF_FFFF)) == 0)
    }

    @Test("supported CPUID is non-empty and the feature helpers read the raw leaves")
    func supportedCPUID() throws {
        let entries = try KVMSystem().supportedCPUID()
        #expect(!entries.isEmpty)
        #expect(entries.contains { $0.function == 0 })
        // Derived independently from the raw entries: CPUID.80000001H:EDX bit 26 (Page1GB), 01H:EDX bit 3
        // (PSE), 80000001H:EDX bit 20 (NX).
        let extended = entries.first { $0.function == 0x8000_0001 }
        let basic = entries.first { $0.function == 1 }
        #expect(entries.supportsPage1GB == ((extended?.edx ?? 0) >> 26 & 1 == 1))
        #expect(entries.supportsNX == ((extended?.edx ?? 0) >> 20 & 1 == 1))
        #expect(entries.supportsPSE == ((basic?.edx ?? 0) >> 3 & 1 == 1))
    }

    @Test("two OUTs to the console port, then HLT: exactly three exits")
    func outAndHalt() throws {
        let guest = try RealModeGuest(code: [
            0xB0, 0x41,  // mov al, 'A'
            0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
            0xEE,  // out dx, al
            0xB0, 0x42,  // mov al, 'B'
            0xEE,  // out dx, al
            0xF4,  // hlt
        ])
        #expect(
            try guest.runToHalt() == [
                .ioOut(port: 0x3F8, size: 1, value: 0x41),
                .ioOut(port: 0x3F8, size: 1, value: 0x42),
                .halt,
            ])
    }

    @Test("16- and 32-bit OUTs carry the whole value")
    func wideOut() throws {
        let guest = try RealModeGuest(code: [
            0xBA, 0xF4, 0x00,  // mov dx, 0xf4
            0xB8, 0x34, 0x12,  // mov ax, 0x1234
            0xEF,  // out dx, ax
            0x66, 0xB8, 0xEF, 0xBE, 0xAD, 0xDE,  // mov eax, 0xdeadbeef
            0x66, 0xEF,  // out dx, eax
            0xF4,  // hlt
        ])
        #expect(
            try guest.runToHalt() == [
                .ioOut(port: 0xF4, size: 2, value: 0x1234),
                .ioOut(port: 0xF4, size: 4, value: 0xDEAD_BEEF),
                .halt,
            ])
    }

    /// KVM may batch a `REP OUTSB` into string exits or (as kvm_pvm does here) deliver one single OUT
    /// exit per byte; either way the bytes must arrive complete and in order.
    @Test("REP OUTSB delivers every byte in order, then HLT")
    func stringOut() throws {
        let guest = try RealModeGuest(
            code: [
                0xBE, 0x00, 0x11,  // mov si, 0x1100
                0xB9, 0x03, 0x00,  // mov cx, 3
                0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
                0xFC,  // cld
                0xF3, 0x6E,  // rep outsb
                0xF4,  // hlt
            ],
            data: [0x1100: Array("abc".utf8)])
        let exits = try guest.runToHalt()
        var bytes: [UInt8] = []
        for exit in exits.dropLast() {
            switch exit {
            case .ioOut(port: 0x3F8, size: 1, let value): bytes.append(UInt8(value))
            case .ioOutString(port: 0x3F8, size: 1, let string): bytes += string
            default: Issue.record("unexpected exit \(exit)")
            }
        }
        #expect(bytes == Array("abc".utf8))
        #expect(exits.last == .halt)
    }

    @Test("an IN answered with completeIORead gives the guest that value")
    func inCompleted() throws {
        let guest = try RealModeGuest(code: [
            0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
            0xEC,  // in al, dx
            0xEE,  // out dx, al
            0xF4,  // hlt
        ])
        #expect(try guest.vcpu.run() == .ioIn(port: 0x3F8, size: 1))
        guest.vcpu.completeIORead(0x5A)
        #expect(try guest.runToHalt() == [.ioOut(port: 0x3F8, size: 1, value: 0x5A), .halt])
    }

    @Test("unbacked memory exits as MMIO: writes carry the value, reads take completeMMIORead's")
    func mmio() throws {
        let guest = try RealModeGuest(code: [
            0xB8, 0x00, 0x20,  // mov ax, 0x2000
            0x8E, 0xD8,  // mov ds, ax             (DS base 0x20000: outside the 64 KiB slot)
            0xC6, 0x06, 0x00, 0x00, 0x77,  // mov byte [0], 0x77
            0xA0, 0x01, 0x00,  // mov al, [1]
            0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
            0xEE,  // out dx, al
            0xF4,  // hlt
        ])
        #expect(try guest.vcpu.run() == .mmio(address: 0x2_0000, size: 1, writeValue: 0x77))
        #expect(try guest.vcpu.run() == .mmio(address: 0x2_0001, size: 1, writeValue: nil))
        guest.vcpu.completeMMIORead(0x33)
        #expect(try guest.runToHalt() == [.ioOut(port: 0x3F8, size: 1, value: 0x33), .halt])
    }

    @Test("a kick from another thread stops a guest spinning in jmp $")
    func kick() throws {
        let guest = try RealModeGuest(code: [0xEB, 0xFE])  // jmp $
        let kicker = guest.vcpu.makeKicker()  // on this thread, which runs the vCPU below
        let thread = startThread {
            usleep(50_000)  // let the vCPU enter the guest first (a kick before entry works too)
            kicker.kick()
        }
        defer { pthread_join(thread, nil) }
        #expect(try guest.vcpu.run() == .interrupted)
        #expect(guest.vcpu.immediateExit)
        #expect(try guest.vcpu.registers().rip == 0x1000)

        // The guest is intact: with immediate_exit cleared it runs again (and spins until kicked again).
        guest.vcpu.immediateExit = false
        let second = startThread {
            usleep(20_000)
            kicker.kick()
        }
        defer { pthread_join(second, nil) }
        #expect(try guest.vcpu.run() == .interrupted)
        guest.vcpu.immediateExit = false
    }

    @Test("a kick reaches a vCPU thread that does not block the kick signal")
    func kickOnPlainThread() throws {
        let outcome = Mutex<[VCPUExit]?>(nil)
        let vcpuThread = startThread {
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, KVMSystem.kickSignal)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
            guard let guest = try? RealModeGuest(code: [0xEB, 0xFE]) else { return }  // jmp $
            let kicker = guest.vcpu.makeKicker()
            let kickThread = startThread {
                usleep(30_000)
                kicker.kick()
            }
            let first = try? guest.vcpu.run()
            pthread_join(kickThread, nil)
            guest.vcpu.immediateExit = false
            guest.vcpu.immediateExit = true  // and once more without a signal
            let second = try? guest.vcpu.run()
            outcome.withLock { $0 = [first, second].compactMap { $0 } }
        }
        pthread_join(vcpuThread, nil)
        #expect(outcome.withLock { $0 } == [.interrupted, .interrupted])
    }

    @Test("a kick on a thread that blocks the kick signal leaves no signal pending after the run")
    func kickConsumesPendingSignal() throws {
        let guest = try RealModeGuest(code: [0xEB, 0xFE])  // jmp $
        var block = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, KVMSystem.kickSignal)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &block, &previous)  // as Dispatch worker threads already do
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let kicker = guest.vcpu.makeKicker()
        let thread = startThread {
            usleep(30_000)
            kicker.kick()
        }
        defer { pthread_join(thread, nil) }
        #expect(try guest.vcpu.run() == .interrupted)
        var pending = sigset_t()
        sigpending(&pending)
        #expect(sigismember(&pending, KVMSystem.kickSignal) == 0)
    }

    @Test("an alarm stops a spinning guest on a thread that blocks the kick signal, and cancel leaves nothing pending")
    func alarm() throws {
        let guest = try RealModeGuest(code: [0xEB, 0xFE])  // jmp $
        let alarm = try VCPUAlarm(after: .milliseconds(30))
        #expect(try guest.vcpu.run() == .interrupted)
        #expect(alarm.expired)
        usleep(25_000)  // let the 10 ms re-fire land while the thread is outside KVM_RUN
        alarm.cancel()
        var pending = sigset_t()
        sigpending(&pending)
        #expect(sigismember(&pending, KVMSystem.kickSignal) == 0)
    }

    @Test("immediateExit set before KVM_RUN returns interrupted without running the guest")
    func immediateExit() throws {
        let guest = try RealModeGuest(code: [0xF4])  // hlt
        guest.vcpu.immediateExit = true
        #expect(try guest.vcpu.run() == .interrupted)
        guest.vcpu.immediateExit = false
        #expect(try guest.vcpu.run() == .halt)
    }

    @Test("kicking after the vCPU is gone does nothing")
    func kickAfterRelease() throws {
        var guest: RealModeGuest? = try RealModeGuest(code: [0xF4])
        let kicker = guest!.vcpu.makeKicker()
        guest = nil
        kicker.kick()  // would signal this thread, but the vCPU is retired: no effect
    }

    @Test("special registers round-trip through KVM_SET_SREGS / KVM_GET_SREGS")
    func specialRegistersRoundTrip() throws {
        let guest = try RealModeGuest(code: [0xF4])
        let original = try guest.vcpu.specialRegisters()
        try guest.vcpu.setSpecialRegisters(original)
        #expect(try guest.vcpu.specialRegisters() == original)

        var changed = original
        changed.ds.base = 0x2_0000
        changed.ds.selector = 0x2000
        changed.gdt = DescriptorTable(base: 0x1000, limit: 23)
        changed.idt = DescriptorTable(base: 0x3000, limit: 0x3FF)
        try guest.vcpu.setSpecialRegisters(changed)
        #expect(try guest.vcpu.specialRegisters() == changed)
    }

    @Test("general registers round-trip through KVM_SET_REGS / KVM_GET_REGS")
    func registersRoundTrip() throws {
        let guest = try RealModeGuest(code: [0xF4])
        var registers = Registers()
        registers.rax = 0x1111; registers.rbx = 0x2222; registers.rcx = 0x3333; registers.rdx = 0x4444
        registers.rsi = 0x5555; registers.rdi = 0x6666; registers.rsp = 0x7000; registers.rbp = 0x8888
        registers.r8 = 8; registers.r9 = 9; registers.r10 = 10; registers.r11 = 11
        registers.r12 = 12; registers.r13 = 13; registers.r14 = 14; registers.r15 = 15
        registers.rip = 0x1000; registers.rflags = 0x2
        try guest.vcpu.setRegisters(registers)
        #expect(try guest.vcpu.registers() == registers)
    }

    @Test("KVM_TRANSLATE in real mode is the identity and valid")
    func translateRealMode() throws {
        let guest = try RealModeGuest(code: [0xF4])
        let translation = try guest.vcpu.translate(0x1000)
        #expect(translation.valid)
        #expect(translation.physicalAddress == 0x1000)
        #expect(try guest.vcpu.translate(0xFFF0).physicalAddress == 0xFFF0)
    }

    @Test("an inconsistent special-register state is refused with KVM_SET_SREGS and EINVAL")
    func invalidSpecialRegisters() throws {
        let guest = try RealModeGuest(code: [0xF4])
        var special = try guest.vcpu.specialRegisters()
        special.efer = [.lme, .lma]  // long mode active without CR0.PG / CR4.PAE
        #expect(throws: KVMError.callFailed(call: "KVM_SET_SREGS", errno: EINVAL)) {
            try guest.vcpu.setSpecialRegisters(special)
        }
    }

    @Test("a memory slot that is not page-aligned is refused")
    func misalignedSlot() throws {
        let guest = try RealModeGuest(code: [0xF4])
        #expect(throws: KVMError.callFailed(call: "KVM_SET_USER_MEMORY_REGION", errno: EINVAL)) {
            try guest.vm.setUserMemoryRegion(
                slot: 1, guestPhysicalAddress: 0x10_0800, size: 0x1000, hostAddress: guest.memory)
        }
    }
}
