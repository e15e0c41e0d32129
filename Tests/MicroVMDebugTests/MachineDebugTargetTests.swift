import Foundation
import GDBRemote
import KVMKit
import MicroVM
import Testing

@testable import MicroVMDebug

/// The target against real machines, without gdb: every answer the stub would send, checked exactly.
@Suite("a machine as a gdb target", .enabled(if: kvmUsable, kvmReason))
struct MachineDebugTargetTests {
    let symbols = elfSymbols(try! packageFile(debugmePath))

    func address(_ name: String) throws -> UInt64 {
        try #require(symbols[name], "debugme64.elf has no symbol \(name)").address
    }

    /// Four addresses the guest never executes, in the padding after its code on the last page of text:
    /// breakpoints there only take debug registers, or bytes nothing reads.
    func unreachedAddresses() throws -> [UInt64] {
        let text = try #require(elfSegments(try packageFile(debugmePath)).first)
        let pageEnd = (text.virtualAddress + text.memorySize + 0xFFF) & ~0xFFF
        try #require(text.virtualAddress + text.memorySize <= pageEnd - 16, "no padding after the code")
        return (0..<4).map { pageEnd - 16 + 4 * $0 }
    }

    func debugme() throws -> (Machine, MachineDebugTarget) {
        let machine = try Machine(configuration: try debugmeConfiguration())
        return (machine, try MachineDebugTarget(machine: machine))
    }

    @Test("before the first instruction: the entry state, as booted")
    func entryState() throws {
        let (machine, target) = try debugme()
        let registers = try target.readRegisters()
        #expect(registers.architecture == .amd64)
        #expect(registers[.ip] == 0xFFFF_FFFF_8000_0000)
        #expect(registers[.sp] == 0x80000)
        #expect(registers[.di] == 0x2000)
        #expect(registers[.flags] == 0x2)
        #expect(registers[.cs] == 0x8 && registers[.ss] == 0x10 && registers[.ds] == 0x10)
        #expect(registers[.cr0] == 0x8001_0023)  // PE MP NE WP PG
        #expect(registers[.cr3] == machine.addressSpace.rootPhysicalAddress)
        #expect(registers[.cr4] == 0x620)  // PAE OSFXSR OSXMMEXCPT
        #expect(registers[.efer] == 0xD00)  // LME LMA NXE
        #expect(registers[.fctrl] == 0x37F)
        #expect(registers[.ftag] == 0xFFFF)
        #expect(registers[.mxcsr] == 0x1F80)
    }

    @Test("memory through the guest's tables: the upper half, its identity alias, and faults, not host faults")
    func memory() throws {
        let (_, target) = try debugme()
        let magic = try address("magic")
        let pattern: [UInt8] = [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01]
        #expect(try target.readMemory(at: magic, count: 8) == pattern)
        // The data segment's frames are at 0x103000: the identity map of them shows the same bytes.
        #expect(magic - 0xFFFF_FFFF_8000_0000 + 0x10_0000 == 0x10_3008)
        #expect(try target.readMemory(at: 0x10_3008, count: 8) == pattern)
        for unmapped: UInt64 in [0, 0xFFF, 0xFFFF_FFFF_9000_0000, 0x0000_8000_0000_0000, 0xFFFF_FFFF_FFFF_FFF8] {
            #expect(throws: GDBTargetError.memoryFault(address: unmapped)) {
                try target.readMemory(at: unmapped, count: 8)
            }
        }
        // A read that runs off the end of the last segment's page faults as a whole.
        #expect(throws: GDBTargetError.memoryFault(address: 0xFFFF_FFFF_8000_3FF8)) {
            try target.readMemory(at: 0xFFFF_FFFF_8000_3FF8, count: 16)
        }
        // Code is read-only to the guest, not to the debugger.
        let scale = try address("scale")
        let original = try target.readMemory(at: scale, count: 2)
        try target.writeMemory(at: scale, bytes: [0x90, 0x90])
        #expect(try target.readMemory(at: scale, count: 2) == [0x90, 0x90])
        try target.writeMemory(at: scale, bytes: original)
        #expect(throws: GDBTargetError.memoryFault(address: 0xFFFF_FFFF_9000_0000)) {
            try target.writeMemory(at: 0xFFFF_FFFF_9000_0000, bytes: [1])
        }
    }

    @Test("single steps: cld, xor ebp, then the call lands on microvm_start")
    func singleSteps() throws {
        let (machine, target) = try debugme()
        #expect(try target.resume(.step) == .signal(.trap))
        #expect(machine.currentRegisters.rip == 0xFFFF_FFFF_8000_0001)
        #expect(try target.resume(.step) == .signal(.trap))
        #expect(machine.currentRegisters.rip == 0xFFFF_FFFF_8000_0003)
        #expect(try target.resume(.step) == .signal(.trap))
        #expect(machine.currentRegisters.rip == (try address("microvm_start")))
        #expect(machine.currentRegisters.rsp == 0x80000 - 8)
    }

    @Test("a breakpoint in a debug register stops at scale(1, 7); without it the guest exits with 42")
    func breakpointInRegister() throws {
        let (machine, target) = try debugme()
        let scale = try address("scale")
        try target.insertBreakpoint(.software, at: scale, length: 1)
        #expect(machine.debugSettings?.hardwareBreakpoints == [.execute(scale)])
        #expect(try target.resume(.continue) == .softwareBreakpoint)
        let registers = try target.readRegisters()
        #expect(registers[.ip] == scale && registers[.di] == 1 && registers[.si] == 7)
        try target.removeBreakpoint(.software, at: scale, length: 1)
        #expect(try target.resume(.continue) == .exited(status: 42))
        #expect(target.end == .success(.exited(status: 42)))
        #expect(
            String(decoding: machine.consoleOutput, as: UTF8.self)
                == "debugme: start\ndebugme: magic 0123456789abcdef\ndebugme: total 42\n")
        // Asked to run again, the guest is still gone.
        #expect(try target.resume(.continue) == .exited(status: 42))
    }

    @Test("the fifth breakpoint is an INT3 in memory, hidden from reads, and stops the guest on this KVM too")
    func plantedBreakpoint() throws {
        let (machine, target) = try debugme()
        let scale = try address("scale")
        let original = try #require(machine.readVirtual(scale, count: 1))
        for address in try unreachedAddresses() { try target.insertBreakpoint(.software, at: address, length: 1) }
        try target.insertBreakpoint(.software, at: scale, length: 1)
        #expect(machine.readVirtual(scale, count: 1) == [0xCC])
        #expect(try target.readMemory(at: scale, count: 1) == original)
        #expect(machine.debugSettings?.softwareBreakpoints == [scale])
        #expect(try target.resume(.continue) == .softwareBreakpoint)
        #expect(machine.currentRegisters.rip == scale)
        try target.removeBreakpoint(.software, at: scale, length: 1)
        #expect(machine.readVirtual(scale, count: 1) == original)
        #expect(try target.resume(.continue) == .exited(status: 42))
    }

    @Test("Z1 takes a register from a Z0, which moves into memory; a fifth Z1 finds none; watchpoints are refused")
    func hardwareBreakpoints() throws {
        let (machine, target) = try debugme()
        let unreached = try unreachedAddresses()
        for address in unreached { try target.insertBreakpoint(.software, at: address, length: 1) }
        let scale = try address("scale")
        let others = [scale, scale + 4, scale + 8]
        let start = try address("microvm_start")
        for address in [start] + others { try target.insertBreakpoint(.hardware, at: address, length: 1) }
        #expect(Set(machine.debugSettings?.softwareBreakpoints ?? []) == Set(unreached))
        for address in unreached {
            #expect(machine.readVirtual(address, count: 1) == [0xCC])
            #expect(try target.readMemory(at: address, count: 1) != [0xCC])
        }
        #expect(throws: GDBTargetError.resourceExhausted) {
            try target.insertBreakpoint(.hardware, at: scale + 12, length: 1)
        }
        for kind in [GDBBreakpointKind.writeWatchpoint, .readWatchpoint, .accessWatchpoint] {
            #expect(throws: GDBTargetError.unsupported) { try target.insertBreakpoint(kind, at: 0x103008, length: 8) }
        }
        #expect(try target.resume(.continue) == .hardwareBreakpoint)
        #expect(machine.currentRegisters.rip == start)
        // As gdb does, the breakpoint under the program counter goes before the guest runs on (an execute
        // breakpoint at RIP would stop it again at once).
        try target.removeBreakpoint(.hardware, at: start, length: 1)
        #expect(try target.resume(.continue) == .hardwareBreakpoint)
        #expect(machine.currentRegisters.rip == scale)
    }

    @Test("registers written by the debugger reach the guest: factor 9 makes the total 44")
    func writeRegisters() throws {
        let (machine, target) = try debugme()
        let scale = try address("scale")
        try target.insertBreakpoint(.hardware, at: scale, length: 1)
        #expect(try target.resume(.continue) == .hardwareBreakpoint)
        var registers = try target.readRegisters()
        registers[.si] = 9
        registers.setBytes(Array(1...16), of: .xmm1)
        registers[.st0] = 0
        try target.writeRegisters(registers)
        let read = try target.readRegisters()
        #expect(read[.si] == 9 && read.bytes(of: .xmm1) == Array(1...16))
        #expect(machine.currentRegisters.rsi == 9)
        // A state the vCPU refuses (long mode without paging) is an error now, and changes nothing.
        var refused = read
        refused[.cr0] = 0x1
        #expect(throws: GDBTargetError.self) { try target.writeRegisters(refused) }
        #expect(try target.readRegisters()[.cr0] == 0x8001_0023)
        try target.removeBreakpoint(.hardware, at: scale, length: 1)
        #expect(try target.resume(.continue) == .exited(status: 9 + 14 + 21))
    }

    @Test("an interrupt stops a spinning guest, which can still be stepped afterwards")
    func interrupt() throws {
        let machine = try Machine(configuration: try flatConfiguration("loop64"))
        let target = try MachineDebugTarget(machine: machine)
        let handler = target.makeInterruptHandler()
        Thread {
            usleep(300_000)
            handler()
        }.start()
        #expect(try target.resume(.continue) == .signal(.interrupt))
        let rip = machine.currentRegisters.rip
        #expect((0x10_0000..<0x10_1000).contains(rip))
        #expect(try target.resume(.step) == .signal(.trap))
        #expect(target.end == nil)
    }

    @Test("stepping hlt ends the guest as hlt does (kvm_pvm would step past it)")
    func stepHalt() throws {
        var configuration = try flatConfiguration("loop64")
        configuration.image = [0x90, 0xF4, 0xEB, 0xFE]  // nop; hlt; jmp $
        let machine = try Machine(configuration: configuration)
        let target = try MachineDebugTarget(machine: machine)
        #expect(try target.resume(.step) == .signal(.trap))
        #expect(machine.currentRegisters.rip == 0x10_0001)
        #expect(try target.resume(.step) == .exited(status: 0))
        #expect(target.end == .success(.halted))
    }

    @Test("a fault is a signal with the registers as they were, then the guest is gone with that signal")
    func fault() throws {
        let machine = try Machine(configuration: try flatConfiguration("nullread64"))
        let target = try MachineDebugTarget(machine: machine)
        #expect(try target.resume(.continue) == .signal(.segmentationFault))
        guard case .failure(.fault(let fault))? = target.end else {
            Issue.record("expected a fault, got \(String(describing: target.end))")
            return
        }
        #expect(fault.kind == .tripleFault && fault.cr2 == 0x10)
        #expect(try target.readRegisters()[.cr2] == 0x10)
        #expect(try target.resume(.continue) == .terminated(.segmentationFault))
    }

    @Test("detach puts the bytes back and leaves debug mode: the guest runs to its end on its own")
    func detach() throws {
        let (machine, target) = try debugme()
        let scale = try address("scale")
        let original = machine.readVirtual(scale, count: 1)
        for address in try unreachedAddresses() { try target.insertBreakpoint(.hardware, at: address, length: 1) }
        try target.insertBreakpoint(.software, at: scale, length: 1)
        #expect(machine.readVirtual(scale, count: 1) == [0xCC])
        target.detach()
        #expect(machine.readVirtual(scale, count: 1) == original)
        #expect(machine.debugSettings == nil)
        #expect(try machine.run() == .exited(status: 42))
    }

    @Test("kill removes the planted bytes")
    func kill() throws {
        let (machine, target) = try debugme()
        let scale = try address("scale")
        let original = machine.readVirtual(scale, count: 1)
        for address in try unreachedAddresses() { try target.insertBreakpoint(.hardware, at: address, length: 1) }
        try target.insertBreakpoint(.software, at: scale, length: 1)
        target.kill()
        #expect(target.killed)
        #expect(machine.readVirtual(scale, count: 1) == original)
    }
}

/// The conversions that need no machine.
@Suite("register and signal conversions")
struct ConversionTests {
    /// ST0 = `bytes` (80-bit, little-endian) pushed once: TOP 7, physical register R7 not empty.
    func pushed(_ bytes: [UInt8]) -> FPUState {
        var state = FPUState()
        state.fsw = 7 << 11
        state.ftwx = 1 << 7
        state.x87Registers.replaceSubrange(0..<10, with: bytes)
        return state
    }

    @Test("the full tag word classifies each non-empty register as FSAVE would; the rest are empty")
    func tagWord() {
        let one: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0x80, 0xFF, 0x3F]  // 1.0: integer bit, exponent 0x3FFF
        let zero = [UInt8](repeating: 0, count: 10)
        let infinity: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0x80, 0xFF, 0x7F]
        let denormal: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        let unnormal: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0x40, 0xFF, 0x3F]  // exponent set, integer bit clear
        #expect(RegisterState.fullTagWord(pushed(one)) == 0x3FFF)
        #expect(RegisterState.fullTagWord(pushed(zero)) == 0x7FFF)
        #expect(RegisterState.fullTagWord(pushed(infinity)) == 0xBFFF)
        #expect(RegisterState.fullTagWord(pushed(denormal)) == 0xBFFF)
        #expect(RegisterState.fullTagWord(pushed(unnormal)) == 0xBFFF)
        #expect(RegisterState.fullTagWord(FPUState()) == 0xFFFF)
        #expect(RegisterState.abridgedTagWord(0x3FFF) == 0x80)
        #expect(RegisterState.abridgedTagWord(0xFFFF) == 0)
        #expect(RegisterState.abridgedTagWord(0) == 0xFF)
    }

    @Test("the XSAVE area's legacy region read and written as FPU state, MXCSR included")
    func legacyRegion() throws {
        var bytes = [UInt8](repeating: 0, count: XSaveArea.legacySize)
        bytes[0] = 0x7F; bytes[1] = 0x03  // FCW
        bytes[24] = 0x80; bytes[25] = 0x1F  // MXCSR
        bytes[32] = 0xAA  // ST0's first byte
        bytes[160 + 16] = 0xBB  // XMM1's first byte
        var area = try #require(XSaveArea(bytes: bytes))
        var state = area.legacyState
        #expect(state.fcw == 0x37F && state.mxcsr == 0x1F80 && state.x87Registers[0] == 0xAA)
        #expect(state.xmmRegisters[16] == 0xBB)
        state.mxcsr = 0x1F81
        state.lastIP = 0x1122_3344_5566_7788
        state.xmmRegisters[255] = 0xCC
        area.legacyState = state
        #expect(area.mxcsr == 0x1F81)
        #expect(area.bytes[8..<16].elementsEqual([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]))
        #expect(area.bytes[415] == 0xCC)
        #expect(area.xstateBV == 0b11)
        #expect(area.legacyState == state)
    }

    @Test("how a failed run shows in gdb")
    func signals() {
        func signal(_ kind: GuestFault.Kind) -> GDBSignal {
            MachineDebugTarget.signal(for: .fault(GuestFault(kind, rip: 0)))
        }
        #expect(signal(.tripleFault) == .segmentationFault)
        #expect(signal(.exception(vector: 14, errorCode: 2)) == .segmentationFault)
        #expect(signal(.exception(vector: 0, errorCode: 0)) == .floatingPointException)
        #expect(signal(.exception(vector: 6, errorCode: 0)) == .illegalInstruction)
        #expect(signal(.emulationFailure(bytes: [0x66, 0x0F, 0xEF, 0xC0])) == .illegalInstruction)
        #expect(signal(.unbackedMemory(address: 0xD000_0000, size: 4, writeValue: nil)) == .busError)
        #expect(signal(.unknownPort(port: 0x80, size: 1, writeValue: 0, count: 1)) == .segmentationFault)
        #expect(signal(.badHypercall("x")).rawValue == 12)
        #expect(MachineDebugTarget.signal(for: .timeout(seconds: 1, rip: 0, exits: 0)) == .alarm)
        #expect(MachineDebugTarget.signal(for: .consoleFailed("x")).rawValue == 13)
    }
}
