/// The x86-64 general-purpose registers, the instruction pointer and the flags of one vCPU.
///
/// The kernel type is `struct kvm_regs`; read and write it with ``VCPU/registers()`` and
/// ``VCPU/setRegisters(_:)``. In 32-bit modes only the low halves are meaningful.
public struct Registers: Hashable, Sendable {
    /// RAX, the accumulator.
    public var rax: UInt64 = 0
    /// RBX.
    public var rbx: UInt64 = 0
    /// RCX, the count register (string and loop instructions).
    public var rcx: UInt64 = 0
    /// RDX, also the port for `IN`/`OUT DX`.
    public var rdx: UInt64 = 0
    /// RSI, the string source index.
    public var rsi: UInt64 = 0
    /// RDI, the string destination index; the first argument in the System V ABI.
    public var rdi: UInt64 = 0
    /// RSP, the stack pointer.
    public var rsp: UInt64 = 0
    /// RBP, the frame pointer.
    public var rbp: UInt64 = 0
    /// R8.
    public var r8: UInt64 = 0
    /// R9.
    public var r9: UInt64 = 0
    /// R10.
    public var r10: UInt64 = 0
    /// R11.
    public var r11: UInt64 = 0
    /// R12.
    public var r12: UInt64 = 0
    /// R13.
    public var r13: UInt64 = 0
    /// R14.
    public var r14: UInt64 = 0
    /// R15.
    public var r15: UInt64 = 0
    /// The instruction pointer.
    public var rip: UInt64 = 0
    /// RFLAGS. Bit 1 is reserved and must be 1, hence the default `0x2` (interrupts off).
    public var rflags: UInt64 = 0x2

    /// All registers zero, RFLAGS `0x2`.
    public init() {}
}

/// One segment register with its hidden descriptor cache, as KVM presents it (`struct kvm_segment`).
///
/// Field names follow the descriptor fields of Intel SDM Vol. 3A §3.4.5.
public struct Segment: Hashable, Sendable {
    /// The segment base address (ignored for CS/DS/ES/SS in 64-bit mode).
    public var base: UInt64 = 0
    /// The segment limit in bytes (already scaled when `g` is set).
    public var limit: UInt32 = 0
    /// The selector: descriptor index << 3 | TI << 2 | RPL.
    public var selector: UInt16 = 0
    /// The 4-bit descriptor type (for code/data, bit 0 is Accessed, bit 3 is code).
    public var type: UInt8 = 0
    /// P: the segment is present.
    public var present: Bool = false
    /// DPL: the descriptor privilege level, 0-3.
    public var dpl: UInt8 = 0
    /// D/B: 32-bit default operand size (code) or big stack (data).
    public var db: Bool = false
    /// S: a code or data segment (as opposed to a system segment such as a TSS).
    public var s: Bool = false
    /// L: 64-bit code segment.
    public var l: Bool = false
    /// G: the limit is in 4 KiB units.
    public var g: Bool = false
    /// AVL: available to software.
    public var avl: Bool = false
    /// The segment register holds no usable segment (VMX "unusable"; a null selector).
    public var unusable: Bool = false

    /// Makes a segment from its fields; unspecified fields are zero / false.
    public init(
        base: UInt64 = 0, limit: UInt32 = 0, selector: UInt16 = 0, type: UInt8 = 0, present: Bool = false,
        dpl: UInt8 = 0, db: Bool = false, s: Bool = false, l: Bool = false, g: Bool = false,
        avl: Bool = false, unusable: Bool = false
    ) {
        self.base = base
        self.limit = limit
        self.selector = selector
        self.type = type
        self.present = present
        self.dpl = dpl
        self.db = db
        self.s = s
        self.l = l
        self.g = g
        self.avl = avl
        self.unusable = unusable
    }
}

/// A descriptor-table register, GDTR or IDTR (`struct kvm_dtable`).
public struct DescriptorTable: Hashable, Sendable {
    /// The linear address of the table.
    public var base: UInt64 = 0
    /// The table size in bytes minus one.
    public var limit: UInt16 = 0

    /// Makes a descriptor-table register.
    public init(base: UInt64 = 0, limit: UInt16 = 0) {
        self.base = base
        self.limit = limit
    }
}

/// The system state of one vCPU: segments, descriptor tables, control registers, EFER, APIC base.
///
/// The kernel type is `struct kvm_sregs`; read and write it with ``VCPU/specialRegisters()`` and
/// ``VCPU/setSpecialRegisters(_:)``. Obtain one by reading, then modify: the kernel's pending-interrupt
/// bitmap rides along unchanged (it is not part of the public surface), so a read-modify-write cycle
/// neither injects nor drops interrupts.
public struct SpecialRegisters: Hashable, Sendable {
    /// CS, the code segment.
    public var cs = Segment()
    /// DS, the data segment.
    public var ds = Segment()
    /// ES, the string-destination segment.
    public var es = Segment()
    /// FS.
    public var fs = Segment()
    /// GS.
    public var gs = Segment()
    /// SS, the stack segment.
    public var ss = Segment()
    /// The task register.
    public var tr = Segment()
    /// The local descriptor table register.
    public var ldt = Segment()
    /// GDTR.
    public var gdt = DescriptorTable()
    /// IDTR.
    public var idt = DescriptorTable()
    /// CR0: operating mode and state (protection, paging, FPU handling).
    public var cr0: CR0 = []
    /// CR2: the linear address of the last page fault.
    public var cr2: UInt64 = 0
    /// CR3: the physical address of the top-level page table, plus PCD/PWT or a PCID.
    public var cr3: UInt64 = 0
    /// CR4: architecture extensions (PAE, PSE, SSE state).
    public var cr4: CR4 = []
    /// CR8: the task-priority register.
    public var cr8: UInt64 = 0
    /// IA32_EFER (MSR C000_0080H): long mode and no-execute enables.
    public var efer: EFER = []
    /// IA32_APIC_BASE (MSR 1BH).
    public var apicBase: UInt64 = 0
    /// `kvm_sregs.interrupt_bitmap`: interrupts pending injection, carried through unchanged.
    var interruptBitmap = InterruptBitmap()

    /// All fields zero. Prefer starting from ``VCPU/specialRegisters()``.
    public init() {}
}

/// `kvm_sregs.interrupt_bitmap`: 256 bits (KVM_NR_INTERRUPTS), one per vector.
struct InterruptBitmap: Hashable, Sendable {
    var word0: UInt64 = 0
    var word1: UInt64 = 0
    var word2: UInt64 = 0
    var word3: UInt64 = 0
}
