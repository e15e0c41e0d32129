// Byte encodings of the register types, for snapshots: the layouts of `struct kvm_regs` and
// `struct kvm_sregs` on x86-64, little-endian (see ``KVMByteEncodable``).

extension Registers: KVMByteEncodable {
    /// The size of the encoding: `sizeof(struct kvm_regs)`.
    public static let byteCount = 144

    /// Decodes the 144-byte encoding: 18 u64 in the order rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8-r15,
    /// rip, rflags (`struct kvm_regs`).
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self.init()
        decodeBytes(bytes) { r in
            rax = r.read(); rbx = r.read(); rcx = r.read(); rdx = r.read()
            rsi = r.read(); rdi = r.read(); rsp = r.read(); rbp = r.read()
            r8 = r.read(); r9 = r.read(); r10 = r.read(); r11 = r.read()
            r12 = r.read(); r13 = r.read(); r14 = r.read(); r15 = r.read()
            rip = r.read(); rflags = r.read()
        }
    }

    /// The 144-byte encoding, laid out as `struct kvm_regs`.
    public var bytes: [UInt8] {
        encodeBytes(count: Self.byteCount) { w in
            for value in [rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags] {
                w.write(value)
            }
        }
    }
}

extension Segment {
    /// `struct kvm_segment`, 24 bytes: base u64, limit u32, selector u16, then the bytes type, present,
    /// dpl, db, s, l, g, avl, unusable, padding.
    init(reading r: inout ByteReader) {
        self.init()
        base = r.read(); limit = r.read(); selector = r.read(); type = r.read()
        present = r.readBool(); dpl = r.read(); db = r.readBool(); s = r.readBool(); l = r.readBool()
        g = r.readBool(); avl = r.readBool(); unusable = r.readBool()
        r.skip(1)
    }

    func write(to w: inout ByteWriter) {
        w.write(base); w.write(limit); w.write(selector); w.write(type)
        w.write(present); w.write(dpl); w.write(db); w.write(s); w.write(l); w.write(g); w.write(avl)
        w.write(unusable)
        w.skip(1)
    }
}

extension DescriptorTable {
    /// `struct kvm_dtable`, 16 bytes: base u64, limit u16, 6 bytes of padding.
    init(reading r: inout ByteReader) {
        self.init(base: r.read(), limit: r.read())
        r.skip(6)
    }

    func write(to w: inout ByteWriter) {
        w.write(base); w.write(limit); w.skip(6)
    }
}

extension SpecialRegisters: KVMByteEncodable {
    /// The size of the encoding: `sizeof(struct kvm_sregs)`.
    public static let byteCount = 312

    /// Decodes the 312-byte encoding (`struct kvm_sregs`): the segments cs, ds, es, fs, gs, ss, tr, ldt
    /// (24 bytes each, see `kvm_segment`) at 0; gdt, idt (16 bytes each) at 192; cr0, cr2, cr3, cr4, cr8,
    /// efer, apic_base (u64) at 224; the 256-bit pending-interrupt bitmap at 280.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self.init()
        decodeBytes(bytes) { r in
            cs = Segment(reading: &r); ds = Segment(reading: &r); es = Segment(reading: &r)
            fs = Segment(reading: &r); gs = Segment(reading: &r); ss = Segment(reading: &r)
            tr = Segment(reading: &r); ldt = Segment(reading: &r)
            gdt = DescriptorTable(reading: &r); idt = DescriptorTable(reading: &r)
            cr0 = CR0(rawValue: r.read()); cr2 = r.read(); cr3 = r.read(); cr4 = CR4(rawValue: r.read())
            cr8 = r.read(); efer = EFER(rawValue: r.read()); apicBase = r.read()
            interruptBitmap = InterruptBitmap(word0: r.read(), word1: r.read(), word2: r.read(), word3: r.read())
        }
    }

    /// The 312-byte encoding, laid out as `struct kvm_sregs`.
    public var bytes: [UInt8] {
        encodeBytes(count: Self.byteCount) { w in
            for segment in [cs, ds, es, fs, gs, ss, tr, ldt] { segment.write(to: &w) }
            gdt.write(to: &w); idt.write(to: &w)
            for value in [cr0.rawValue, cr2, cr3, cr4.rawValue, cr8, efer.rawValue, apicBase] { w.write(value) }
            let bits = interruptBitmap
            for word in [bits.word0, bits.word1, bits.word2, bits.word3] { w.write(word) }
        }
    }
}
