/// An x86 register gdb can show, independent of the architecture's spelling: ``ax`` is `rax` on amd64 and
/// `eax` on i386.
///
/// Which registers a target has, their names, sizes and order in the `g` packet come from its
/// ``GDBArchitecture`` (``GDBArchitecture/registers``); ``r8`` to ``r15`` and ``xmm8`` to ``xmm15`` exist on
/// amd64 only.
public enum GDBRegister: Hashable, Sendable, CaseIterable {
    /// The accumulator: `rax` / `eax`.
    case ax
    /// `rbx` / `ebx`.
    case bx
    /// `rcx` / `ecx`.
    case cx
    /// `rdx` / `edx`.
    case dx
    /// The source index: `rsi` / `esi`.
    case si
    /// The destination index: `rdi` / `edi`.
    case di
    /// The frame pointer: `rbp` / `ebp`.
    case bp
    /// The stack pointer: `rsp` / `esp`.
    case sp
    /// `r8` (amd64 only).
    case r8
    /// `r9` (amd64 only).
    case r9
    /// `r10` (amd64 only).
    case r10
    /// `r11` (amd64 only).
    case r11
    /// `r12` (amd64 only).
    case r12
    /// `r13` (amd64 only).
    case r13
    /// `r14` (amd64 only).
    case r14
    /// `r15` (amd64 only).
    case r15
    /// The instruction pointer: `rip` / `eip`.
    case ip
    /// The flags register: `eflags` (32 bits in gdb's layout on both architectures).
    case flags
    /// The code segment selector.
    case cs
    /// The stack segment selector.
    case ss
    /// The data segment selector.
    case ds
    /// The extra segment selector.
    case es
    /// The FS selector.
    case fs
    /// The GS selector.
    case gs
    /// x87 register ST(0), 80 bits.
    case st0
    /// x87 register ST(1).
    case st1
    /// x87 register ST(2).
    case st2
    /// x87 register ST(3).
    case st3
    /// x87 register ST(4).
    case st4
    /// x87 register ST(5).
    case st5
    /// x87 register ST(6).
    case st6
    /// x87 register ST(7).
    case st7
    /// The x87 control word.
    case fctrl
    /// The x87 status word.
    case fstat
    /// The x87 tag word.
    case ftag
    /// The x87 last instruction's code segment.
    case fiseg
    /// The x87 last instruction's offset.
    case fioff
    /// The x87 last operand's segment.
    case foseg
    /// The x87 last operand's offset.
    case fooff
    /// The x87 last opcode.
    case fop
    /// SSE register XMM0, 128 bits.
    case xmm0
    /// XMM1.
    case xmm1
    /// XMM2.
    case xmm2
    /// XMM3.
    case xmm3
    /// XMM4.
    case xmm4
    /// XMM5.
    case xmm5
    /// XMM6.
    case xmm6
    /// XMM7.
    case xmm7
    /// XMM8 (amd64 only).
    case xmm8
    /// XMM9 (amd64 only).
    case xmm9
    /// XMM10 (amd64 only).
    case xmm10
    /// XMM11 (amd64 only).
    case xmm11
    /// XMM12 (amd64 only).
    case xmm12
    /// XMM13 (amd64 only).
    case xmm13
    /// XMM14 (amd64 only).
    case xmm14
    /// XMM15 (amd64 only).
    case xmm15
    /// The SSE control and status register.
    case mxcsr
    /// The FS segment base (`fs_base`).
    case fsBase
    /// The GS segment base (`gs_base`).
    case gsBase
    /// Control register CR0.
    case cr0
    /// Control register CR2: the last page-fault address.
    case cr2
    /// Control register CR3: the page-table root.
    case cr3
    /// Control register CR4.
    case cr4
    /// The extended feature enable register (MSR 0xC0000080).
    case efer
}

/// A group of registers in a target description: one `<feature>` element and one included XML file.
public enum GDBFeature: String, Hashable, Sendable, CaseIterable {
    /// `org.gnu.gdb.i386.core`: general registers, instruction pointer, flags, selectors, x87 (required).
    case core = "org.gnu.gdb.i386.core"
    /// `org.gnu.gdb.i386.sse`: XMM registers and MXCSR.
    case sse = "org.gnu.gdb.i386.sse"
    /// `org.gnu.gdb.i386.segments`: `fs_base` and `gs_base` (amd64 only).
    case segments = "org.gnu.gdb.i386.segments"
    /// `org.microvm.x86.system`: CR0, CR2, CR3, CR4 and EFER, and on i386 `fs_base` and `gs_base` (gdb shows
    /// them as registers it has no special meaning for).
    case system = "org.microvm.x86.system"
}

/// One register as the target description declares it: its name, size, type, and where its bytes sit in
/// the `g` packet.
public struct GDBRegisterDescription: Hashable, Sendable {
    /// Which register this is.
    public var register: GDBRegister
    /// The name in the target description (`rax`, `eip`, `fs_base`, ...).
    public var name: String
    /// The width in bits (`bitsize`).
    public var bitSize: Int
    /// The description's type (`int64`, `code_ptr`, `i387_ext`, `vec128`, ...).
    public var type: String
    /// The register group (`general`, `float`, `vector`), or `nil` for gdb's default.
    public var group: String?
    /// The feature (and included file) that declares it.
    public var feature: GDBFeature
    /// The register's number: its position in the description, as `p` and `P` packets name it (`regnum`).
    public var number: Int
    /// The offset of its first byte in the `g` packet's data (registers are little-endian, back to back).
    public var offset: Int

    /// The width in bytes.
    public var byteCount: Int { bitSize / 8 }
}
