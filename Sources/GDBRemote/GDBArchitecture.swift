/// The instruction set a ``GDBTarget`` runs, which fixes its register layout and target description.
public enum GDBArchitecture: Hashable, Sendable, CaseIterable {
    /// 64-bit x86 (gdb's `i386:x86-64`): 16 general registers of 64 bits, XMM0-XMM15.
    case amd64
    /// 32-bit x86 (gdb's `i386`): 8 general registers of 32 bits, XMM0-XMM7.
    case i386

    /// The BFD architecture name of the description's `<architecture>` element.
    public var gdbName: String {
        switch self {
        case .amd64: "i386:x86-64"
        case .i386: "i386"
        }
    }

    /// The registers in description order: the order of the `g` packet and the numbers of `p` / `P`.
    public var registers: [GDBRegisterDescription] {
        switch self {
        case .amd64: Self.amd64Registers
        case .i386: Self.i386Registers
        }
    }

    /// The features that hold registers, in description order: every feature on amd64; no
    /// ``GDBFeature/segments`` on i386, where `fs_base` and `gs_base` belong to ``GDBFeature/system``.
    public var features: [GDBFeature] {
        GDBFeature.allCases.filter { feature in registers.contains { $0.feature == feature } }
    }

    /// The size of the `g` packet's data: every register's bytes.
    public var registerFileByteCount: Int {
        registers.last.map { $0.offset + $0.byteCount } ?? 0
    }

    /// The description of `register`, or `nil` if this architecture has no such register.
    public func description(of register: GDBRegister) -> GDBRegisterDescription? {
        switch self {
        case .amd64: Self.amd64Index[register]
        case .i386: Self.i386Index[register]
        }
    }

    /// The register gdb treats as the program counter.
    public static let programCounter = GDBRegister.ip

    private static let amd64Registers = layout(for: .amd64)
    private static let i386Registers = layout(for: .i386)
    private static let amd64Index = Dictionary(uniqueKeysWithValues: amd64Registers.map { ($0.register, $0) })
    private static let i386Index = Dictionary(uniqueKeysWithValues: i386Registers.map { ($0.register, $0) })

    /// Builds the layout: gdb requires the core registers in its own order (`rax rbx rcx rdx rsi rdi rbp rsp`
    /// on amd64, `eax ecx edx ebx esp ebp esi edi` on i386), then the x87 registers; the other features
    /// follow in the order they are included.
    private static func layout(for architecture: GDBArchitecture) -> [GDBRegisterDescription] {
        typealias Entry = (GDBRegister, String, Int, String, String?)
        let wide = architecture == .amd64
        let word = wide ? 64 : 32
        let integer = wide ? "int64" : "int32"
        var core: [Entry]
        if wide {
            core = [
                (.ax, "rax", 64, integer, nil), (.bx, "rbx", 64, integer, nil), (.cx, "rcx", 64, integer, nil),
                (.dx, "rdx", 64, integer, nil), (.si, "rsi", 64, integer, nil), (.di, "rdi", 64, integer, nil),
                (.bp, "rbp", 64, "data_ptr", nil), (.sp, "rsp", 64, "data_ptr", nil),
                (.r8, "r8", 64, integer, nil), (.r9, "r9", 64, integer, nil), (.r10, "r10", 64, integer, nil),
                (.r11, "r11", 64, integer, nil), (.r12, "r12", 64, integer, nil), (.r13, "r13", 64, integer, nil),
                (.r14, "r14", 64, integer, nil), (.r15, "r15", 64, integer, nil),
                (.ip, "rip", 64, "code_ptr", nil),
            ]
        } else {
            core = [
                (.ax, "eax", 32, integer, nil), (.cx, "ecx", 32, integer, nil), (.dx, "edx", 32, integer, nil),
                (.bx, "ebx", 32, integer, nil), (.sp, "esp", 32, "data_ptr", nil), (.bp, "ebp", 32, "data_ptr", nil),
                (.si, "esi", 32, integer, nil), (.di, "edi", 32, integer, nil),
                (.ip, "eip", 32, "code_ptr", nil),
            ]
        }
        core += [
            (.flags, "eflags", 32, "x86_eflags", nil),
            (.cs, "cs", 32, "int32", nil), (.ss, "ss", 32, "int32", nil), (.ds, "ds", 32, "int32", nil),
            (.es, "es", 32, "int32", nil), (.fs, "fs", 32, "int32", nil), (.gs, "gs", 32, "int32", nil),
        ]
        let stack: [GDBRegister] = [.st0, .st1, .st2, .st3, .st4, .st5, .st6, .st7]
        core += stack.enumerated().map { ($0.element, "st\($0.offset)", 80, "i387_ext", nil) }
        core += [
            (.fctrl, "fctrl", 32, "int", "float"), (.fstat, "fstat", 32, "int", "float"),
            (.ftag, "ftag", 32, "int", "float"), (.fiseg, "fiseg", 32, "int", "float"),
            (.fioff, "fioff", 32, "int", "float"), (.foseg, "foseg", 32, "int", "float"),
            (.fooff, "fooff", 32, "int", "float"), (.fop, "fop", 32, "int", "float"),
        ]
        let vectors: [GDBRegister] = [
            .xmm0, .xmm1, .xmm2, .xmm3, .xmm4, .xmm5, .xmm6, .xmm7,
            .xmm8, .xmm9, .xmm10, .xmm11, .xmm12, .xmm13, .xmm14, .xmm15,
        ]
        var sse: [Entry] = vectors.prefix(wide ? 16 : 8).enumerated().map {
            ($0.element, "xmm\($0.offset)", 128, "vec128", nil)
        }
        sse.append((.mxcsr, "mxcsr", 32, "x86_mxcsr", "vector"))
        let bases: [Entry] = [(.fsBase, "fs_base", word, integer, nil), (.gsBase, "gs_base", word, integer, nil)]
        // gdb 13 numbers i386 segment bases past the registers of a non-Linux i386 and fails an internal
        // assertion: on i386 the bases are plain registers of the system feature instead.
        let segments = wide ? bases : []
        let system: [Entry] =
            (wide ? [] : bases) + [
                (.cr0, "cr0", word, "x86_cr0", nil), (.cr2, "cr2", word, integer, nil),
                (.cr3, "cr3", word, integer, nil),
                (.cr4, "cr4", word, "x86_cr4", nil), (.efer, "efer", 64, "x86_efer", nil),
            ]
        var result: [GDBRegisterDescription] = []
        var offset = 0
        for (feature, entries) in [(GDBFeature.core, core), (.sse, sse), (.segments, segments), (.system, system)] {
            for (register, name, bits, type, group) in entries {
                result.append(
                    GDBRegisterDescription(
                        register: register, name: name, bitSize: bits, type: type, group: group, feature: feature,
                        number: result.count, offset: offset))
                offset += bits / 8
            }
        }
        return result
    }
}
