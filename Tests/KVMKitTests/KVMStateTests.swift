@preconcurrency import Glibc
import KVMKit
import Testing

/// Reads every MSR of `indices` the vCPU can read, skipping the ones it refuses.
func readableMSRs(_ vcpu: VCPU, _ indices: [UInt32]) throws -> (read: ModelSpecificRegisters, refused: [UInt32]) {
    var read: [MSREntry] = []
    var refused: [UInt32] = []
    var rest = indices[...]
    while !rest.isEmpty {
        let got = try vcpu.modelSpecificRegisters(Array(rest)).entries
        read += got
        rest = rest.dropFirst(got.count)
        if let failed = rest.first {
            refused.append(failed)
            rest = rest.dropFirst()
        }
    }
    return (ModelSpecificRegisters(read), refused)
}

/// Writes every MSR of `registers` the vCPU accepts, skipping the ones it refuses; returns those.
func writeMSRs(_ vcpu: VCPU, _ registers: ModelSpecificRegisters) throws -> [UInt32] {
    var refused: [UInt32] = []
    var rest = registers.entries[...]
    while !rest.isEmpty {
        let written = try vcpu.setModelSpecificRegisters(ModelSpecificRegisters(Array(rest)))
        rest = rest.dropFirst(written)
        if let failed = rest.first {
            refused.append(failed.index)
            rest = rest.dropFirst()
        }
    }
    return refused
}

/// The vCPU state a snapshot saves: each kind round-trips byte-exact through
/// get → encode → decode → set → get, and a changed value is really applied.
@Suite(.enabled(if: kvmUsable, kvmReason))
struct KVMStateTests {
    /// Get, encode, decode, set, get: the second read equals the first, byte for byte.
    func roundTrip<T: KVMByteEncodable>(_ get: () throws -> T, _ set: (T) throws -> Void) throws {
        let first = try get()
        let decoded = try #require(T(bytes: first.bytes))
        try set(decoded)
        let second = try get()
        #expect(second == first)
        #expect(second.bytes == first.bytes)
    }

    @Test("the kernel reports the state capabilities")
    func capabilities() throws {
        let system = try KVMSystem()
        for capability in [KVMCapability.xsave, .xcrs, .vcpuEvents, .debugRegs, .enableCap, .enableCapVM] {
            #expect(system.extension(capability) > 0, "capability \(capability.rawValue)")
        }
        let vm = try system.makeVM()
        #expect(vm.extension(.xsave2) >= 4096)
    }

    @Test("general and special registers round-trip through their encodings")
    func registers() throws {
        let guest = try RealModeGuest(code: [0xF4])
        #expect(try guest.vcpu.run() == .halt)
        try roundTrip(guest.vcpu.registers, guest.vcpu.setRegisters)
        try roundTrip(guest.vcpu.specialRegisters, guest.vcpu.setSpecialRegisters)
    }

    @Test("XSAVE round-trips, and a changed MXCSR is applied")
    func xsave() throws {
        let guest = try RealModeGuest(code: [0xF4])
        #expect(try guest.vcpu.run() == .halt)
        try roundTrip(guest.vcpu.xsave, guest.vcpu.setXSave)
        try roundTrip(guest.vcpu.xsave2, guest.vcpu.setXSave)
        var area = try guest.vcpu.xsave2()
        #expect(area.mxcsr == 0x1F80)  // the reset value
        area.mxcsr = 0x1FA0
        area.xstateBV |= 0b10  // SSE state present, or the restore ignores MXCSR
        try guest.vcpu.setXSave(area)
        #expect(try guest.vcpu.xsave().mxcsr == 0x1FA0)
        let fpuMXCSR = try guest.vcpu.fpu().mxcsr
        withKnownIssue("kvm_pvm: KVM_GET_FPU does not see an MXCSR restored by KVM_SET_XSAVE", isIntermittent: true) {
            #expect(fpuMXCSR == 0x1FA0)
        }
    }

    @Test("the FPU state round-trips and a changed control word is applied")
    func fpu() throws {
        let guest = try RealModeGuest(code: [0xF4])
        try roundTrip(guest.vcpu.fpu, guest.vcpu.setFPU)
        var state = try guest.vcpu.fpu()
        state.fcw = 0x27F
        state.xmmRegisters[17] = 0xAB  // XMM1 byte 1
        try guest.vcpu.setFPU(state)
        #expect(try guest.vcpu.fpu() == state)
    }

    @Test("XCR0 round-trips and a new value (x87 | SSE) is applied")
    func xcrs() throws {
        let guest = try RealModeGuest(code: [0xF4])
        try roundTrip(guest.vcpu.extendedControlRegisters, guest.vcpu.setExtendedControlRegisters)
        let original = try guest.vcpu.extendedControlRegisters()
        #expect(original.registers.first?.index == 0)
        try guest.vcpu.setExtendedControlRegisters(ExtendedControlRegisters(registers: [.init(index: 0, value: 0x3)]))
        #expect(try guest.vcpu.extendedControlRegisters().registers.first == .init(index: 0, value: 0x3))
    }

    @Test("events and debug registers round-trip, and new debug registers are applied")
    func eventsAndDebugRegisters() throws {
        let guest = try RealModeGuest(code: [0xF4])
        #expect(try guest.vcpu.run() == .halt)
        try roundTrip(guest.vcpu.events, guest.vcpu.setEvents)
        try roundTrip(guest.vcpu.debugRegisters, guest.vcpu.setDebugRegisters)
        var registers = try guest.vcpu.debugRegisters()
        registers.dr0 = 0x1234
        registers.dr3 = 0xFFFF_8000_0000_0000
        registers.dr7 = 0x401  // L0
        try guest.vcpu.setDebugRegisters(registers)
        let back = try guest.vcpu.debugRegisters()
        #expect(back.dr0 == 0x1234 && back.dr3 == 0xFFFF_8000_0000_0000 && back.dr7 == 0x401)
    }

    /// IA32_TSC (0x10) keeps counting between the two reads, so it is compared for monotonicity only.
    @Test("every MSR KVM lists round-trips through KVM_GET_MSRS / KVM_SET_MSRS and its encoding")
    func msrs() throws {
        let guest = try RealModeGuest(code: [0xF4])
        #expect(try guest.vcpu.run() == .halt)
        let indices = try guest.system.msrIndexList()
        #expect(indices.contains(0xC000_0080) || indices.contains(0x174))  // EFER or SYSENTER_CS
        let (first, unreadable) = try readableMSRs(guest.vcpu, indices)
        #expect(unreadable.isEmpty, "unreadable MSRs \(unreadable.map { hex($0) })")
        let decoded = try #require(ModelSpecificRegisters(bytes: first.bytes))
        let refused = try writeMSRs(guest.vcpu, decoded)
        let (second, _) = try readableMSRs(guest.vcpu, indices)
        let tsc: UInt32 = 0x10
        #expect(second.entries.map(\.index) == first.entries.map(\.index))
        #expect(second.entries.filter { $0.index != tsc } == first.entries.filter { $0.index != tsc })
        #expect((second[tsc] ?? 0) >= (first[tsc] ?? 0))
        // Report which MSRs the vCPU refuses to take back (a snapshot must skip them).
        print("MSRs: \(indices.count) listed, refused on write: \(refused.map { hex($0) })")
    }

    @Test("KVM_ENABLE_CAP on a vCPU names the request when the capability is unknown")
    func enableCapabilityOnVCPU() throws {
        let guest = try RealModeGuest(code: [0xF4])
        #expect(throws: KVMError.callFailed(call: "KVM_ENABLE_CAP", errno: EINVAL)) {
            try guest.vcpu.enableCapability(KVMCapability(rawValue: 0x7FFF_FFFF))
        }
        try guest.vm.enableCapability(.manualDirtyLogProtect2, arguments: [1])
    }
}
