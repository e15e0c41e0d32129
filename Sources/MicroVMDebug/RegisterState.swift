import GDBRemote
import KVMKit
import MicroVM

/// Every register gdb shows, as the vCPU holds them: the general registers, the special registers
/// (selectors, FS and GS bases, CR0-CR4, EFER) and the x87 / SSE state, converted to and from gdb's register
/// file (``GDBRegisterFile``).
struct RegisterState: Equatable {
    var general: Registers
    var special: SpecialRegisters
    var fpu: FPUState

    /// The registers of `machine` where it stopped.
    init(_ machine: Machine) throws(KVMError) {
        general = machine.currentRegisters
        special = machine.currentSpecialRegisters
        fpu = try machine.floatingPointState()
    }

    /// Writes back the groups that differ from `before`: general registers staged for the next run, special
    /// registers and the FPU state at once (so a state KVM refuses is refused now, as an error gdb shows).
    func apply(to machine: Machine, changedFrom before: RegisterState) throws {
        if special != before.special {
            do {
                try machine.setCurrentSpecialRegisters(special)
            } catch {
                throw GDBTargetError.invalidArgument("the vCPU refuses these control or segment registers: \(error)")
            }
        }
        if fpu != before.fpu {
            do {
                try machine.setFloatingPointState(fpu)
            } catch {
                throw GDBTargetError.invalidArgument("the vCPU refuses this x87/SSE state: \(error)")
            }
        }
        if general != before.general { machine.currentRegisters = general }
    }

    // MARK: To gdb

    /// The register file of `architecture` (values narrower than the vCPU's are truncated).
    func file(for architecture: GDBArchitecture) -> GDBRegisterFile {
        var file = GDBRegisterFile(architecture: architecture)
        for (register, value) in generalValues(for: architecture) { file[register] = value }
        file[.flags] = general.rflags
        for (register, segment) in segments { file[register] = UInt64(segment.selector) }
        for index in 0..<8 {
            file.setBytes(Array(fpu.x87Registers[(index * 16)..<(index * 16 + 10)]), of: Self.stack[index])
        }
        file[.fctrl] = UInt64(fpu.fcw)
        file[.fstat] = UInt64(fpu.fsw)
        file[.ftag] = UInt64(Self.fullTagWord(fpu))
        // FXSAVE's 64-bit form: FPU IP and DP are 64 bits; gdb shows the low 32 as the offset and the
        // next 16 as the "segment", as it reads an FXSAVE area (i387-tdep.c).
        file[.fioff] = fpu.lastIP & 0xFFFF_FFFF
        file[.fiseg] = (fpu.lastIP >> 32) & 0xFFFF
        file[.fooff] = fpu.lastDP & 0xFFFF_FFFF
        file[.foseg] = (fpu.lastDP >> 32) & 0xFFFF
        file[.fop] = UInt64(fpu.lastOpcode & 0x7FF)
        for (index, register) in Self.vectors(for: architecture).enumerated() {
            file.setBytes(Array(fpu.xmmRegisters[(index * 16)..<(index * 16 + 16)]), of: register)
        }
        file[.mxcsr] = UInt64(fpu.mxcsr)
        file[.fsBase] = special.fs.base
        file[.gsBase] = special.gs.base
        file[.cr0] = special.cr0.rawValue
        file[.cr2] = special.cr2
        file[.cr3] = special.cr3
        file[.cr4] = special.cr4.rawValue
        file[.efer] = special.efer.rawValue
        return file
    }

    // MARK: From gdb

    /// Takes every register from `file`. Where gdb's register is narrower than the vCPU's (i386's 32-bit
    /// registers, EFLAGS, the x87 offsets), the vCPU's upper bits are kept.
    mutating func update(from file: GDBRegisterFile) {
        let architecture = file.architecture
        let narrow = architecture == .i386
        func merge(_ old: UInt64, _ new: UInt64, bits: Int) -> UInt64 {
            bits >= 64 ? new : (old & ~((1 << UInt64(bits)) - 1)) | new
        }
        let width = narrow ? 32 : 64
        for (register, _) in generalValues(for: architecture) {
            let value = file[register]
            switch register {
            case .ax: general.rax = merge(general.rax, value, bits: width)
            case .bx: general.rbx = merge(general.rbx, value, bits: width)
            case .cx: general.rcx = merge(general.rcx, value, bits: width)
            case .dx: general.rdx = merge(general.rdx, value, bits: width)
            case .si: general.rsi = merge(general.rsi, value, bits: width)
            case .di: general.rdi = merge(general.rdi, value, bits: width)
            case .bp: general.rbp = merge(general.rbp, value, bits: width)
            case .sp: general.rsp = merge(general.rsp, value, bits: width)
            case .r8: general.r8 = value
            case .r9: general.r9 = value
            case .r10: general.r10 = value
            case .r11: general.r11 = value
            case .r12: general.r12 = value
            case .r13: general.r13 = value
            case .r14: general.r14 = value
            case .r15: general.r15 = value
            case .ip: general.rip = merge(general.rip, value, bits: width)
            default: break
            }
        }
        general.rflags = merge(general.rflags, file[.flags], bits: 32)
        special.cs.selector = UInt16(truncatingIfNeeded: file[.cs])
        special.ss.selector = UInt16(truncatingIfNeeded: file[.ss])
        special.ds.selector = UInt16(truncatingIfNeeded: file[.ds])
        special.es.selector = UInt16(truncatingIfNeeded: file[.es])
        special.fs.selector = UInt16(truncatingIfNeeded: file[.fs])
        special.gs.selector = UInt16(truncatingIfNeeded: file[.gs])
        special.fs.base = merge(special.fs.base, file[.fsBase], bits: width)
        special.gs.base = merge(special.gs.base, file[.gsBase], bits: width)
        special.cr0 = CR0(rawValue: merge(special.cr0.rawValue, file[.cr0], bits: width))
        special.cr2 = merge(special.cr2, file[.cr2], bits: width)
        special.cr3 = merge(special.cr3, file[.cr3], bits: width)
        special.cr4 = CR4(rawValue: merge(special.cr4.rawValue, file[.cr4], bits: width))
        special.efer = EFER(rawValue: file[.efer])
        for index in 0..<8 {
            fpu.x87Registers.replaceSubrange((index * 16)..<(index * 16 + 10), with: file.bytes(of: Self.stack[index]))
        }
        fpu.fcw = UInt16(truncatingIfNeeded: file[.fctrl])
        fpu.fsw = UInt16(truncatingIfNeeded: file[.fstat])
        fpu.ftwx = Self.abridgedTagWord(UInt16(truncatingIfNeeded: file[.ftag]))
        fpu.lastIP = (fpu.lastIP & ~0xFFFF_FFFF_FFFF) | (file[.fiseg] & 0xFFFF) << 32 | (file[.fioff] & 0xFFFF_FFFF)
        fpu.lastDP = (fpu.lastDP & ~0xFFFF_FFFF_FFFF) | (file[.foseg] & 0xFFFF) << 32 | (file[.fooff] & 0xFFFF_FFFF)
        fpu.lastOpcode = UInt16(truncatingIfNeeded: file[.fop] & 0x7FF)
        for (index, register) in Self.vectors(for: architecture).enumerated() {
            fpu.xmmRegisters.replaceSubrange((index * 16)..<(index * 16 + 16), with: file.bytes(of: register))
        }
        fpu.mxcsr = UInt32(truncatingIfNeeded: file[.mxcsr])
    }

    // MARK: Layout

    private static let stack: [GDBRegister] = [.st0, .st1, .st2, .st3, .st4, .st5, .st6, .st7]

    private static func vectors(for architecture: GDBArchitecture) -> ArraySlice<GDBRegister> {
        let all: [GDBRegister] = [
            .xmm0, .xmm1, .xmm2, .xmm3, .xmm4, .xmm5, .xmm6, .xmm7,
            .xmm8, .xmm9, .xmm10, .xmm11, .xmm12, .xmm13, .xmm14, .xmm15,
        ]
        return all.prefix(architecture == .amd64 ? 16 : 8)
    }

    private func generalValues(for architecture: GDBArchitecture) -> [(GDBRegister, UInt64)] {
        var values: [(GDBRegister, UInt64)] = [
            (.ax, general.rax), (.bx, general.rbx), (.cx, general.rcx), (.dx, general.rdx),
            (.si, general.rsi), (.di, general.rdi), (.bp, general.rbp), (.sp, general.rsp), (.ip, general.rip),
        ]
        if architecture == .amd64 {
            values += [
                (.r8, general.r8), (.r9, general.r9), (.r10, general.r10), (.r11, general.r11),
                (.r12, general.r12), (.r13, general.r13), (.r14, general.r14), (.r15, general.r15),
            ]
        }
        return values
    }

    private var segments: [(GDBRegister, Segment)] {
        [
            (.cs, special.cs), (.ss, special.ss), (.ds, special.ds), (.es, special.es), (.fs, special.fs),
            (.gs, special.gs),
        ]
    }

    // MARK: The x87 tag word

    /// The full x87 tag word gdb shows (two bits per physical register R0-R7: 0 valid, 1 zero, 2 special,
    /// 3 empty) from FXSAVE's abridged one (one bit per register: not empty), classifying each register's
    /// value as FSAVE would (Intel SDM Vol. 1 §8.1.7, "x87 FPU Tag Word"; Table 10-2 for the mapping).
    static func fullTagWord(_ fpu: FPUState) -> UInt16 {
        let top = Int(fpu.fsw >> 11) & 7
        var word: UInt16 = 0
        for physical in 0..<8 {
            var tag: UInt16 = 3
            if fpu.ftwx & (1 << UInt8(physical)) != 0 {
                // ST(i) is physical register (TOP + i) mod 8; FXSAVE stores them in ST order.
                let index = (physical - top + 8) % 8
                let bytes = fpu.x87Registers[(index * 16)..<(index * 16 + 10)]
                let exponent = UInt16(bytes[bytes.startIndex + 8]) | UInt16(bytes[bytes.startIndex + 9] & 0x7F) << 8
                let mantissa = bytes.prefix(8)
                let integerBit = bytes[bytes.startIndex + 7] & 0x80 != 0
                if exponent == 0x7FFF {
                    tag = 2
                } else if exponent == 0 {
                    tag = mantissa.allSatisfy { $0 == 0 } ? 1 : 2
                } else {
                    tag = integerBit ? 0 : 2
                }
            }
            word |= tag << UInt16(2 * physical)
        }
        return word
    }

    /// FXSAVE's abridged tag word from a full one: a register is "not empty" unless its tag is 3.
    static func abridgedTagWord(_ full: UInt16) -> UInt8 {
        var abridged: UInt8 = 0
        for physical in 0..<8 where (full >> UInt16(2 * physical)) & 3 != 3 {
            abridged |= 1 << UInt8(physical)
        }
        return abridged
    }
}
