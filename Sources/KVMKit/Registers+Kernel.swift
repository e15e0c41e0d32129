internal import CKVM

// Conversions between KVMKit's register types and the kernel's structs: the only place that knows both.
// Each pair round-trips exactly for every value the kernel produces (flag bytes are 0 or 1; padding is 0).

extension Registers {
    init(_ k: kvm_regs) {
        rax = k.rax; rbx = k.rbx; rcx = k.rcx; rdx = k.rdx
        rsi = k.rsi; rdi = k.rdi; rsp = k.rsp; rbp = k.rbp
        r8 = k.r8; r9 = k.r9; r10 = k.r10; r11 = k.r11
        r12 = k.r12; r13 = k.r13; r14 = k.r14; r15 = k.r15
        rip = k.rip; rflags = k.rflags
    }

    var kernelValue: kvm_regs {
        kvm_regs(
            rax: rax, rbx: rbx, rcx: rcx, rdx: rdx,
            rsi: rsi, rdi: rdi, rsp: rsp, rbp: rbp,
            r8: r8, r9: r9, r10: r10, r11: r11,
            r12: r12, r13: r13, r14: r14, r15: r15,
            rip: rip, rflags: rflags)
    }
}

extension Segment {
    init(_ k: kvm_segment) {
        base = k.base
        limit = k.limit
        selector = k.selector
        type = k.type
        present = k.present != 0
        dpl = k.dpl
        db = k.db != 0
        s = k.s != 0
        l = k.l != 0
        g = k.g != 0
        avl = k.avl != 0
        unusable = k.unusable != 0
    }

    var kernelValue: kvm_segment {
        var k = kvm_segment()
        k.base = base
        k.limit = limit
        k.selector = selector
        k.type = type
        k.present = present ? 1 : 0
        k.dpl = dpl
        k.db = db ? 1 : 0
        k.s = s ? 1 : 0
        k.l = l ? 1 : 0
        k.g = g ? 1 : 0
        k.avl = avl ? 1 : 0
        k.unusable = unusable ? 1 : 0
        return k
    }
}

extension DescriptorTable {
    init(_ k: kvm_dtable) {
        base = k.base
        limit = k.limit
    }

    var kernelValue: kvm_dtable {
        var k = kvm_dtable()
        k.base = base
        k.limit = limit
        return k
    }
}

extension SpecialRegisters {
    init(_ k: kvm_sregs) {
        cs = Segment(k.cs); ds = Segment(k.ds); es = Segment(k.es)
        fs = Segment(k.fs); gs = Segment(k.gs); ss = Segment(k.ss)
        tr = Segment(k.tr); ldt = Segment(k.ldt)
        gdt = DescriptorTable(k.gdt); idt = DescriptorTable(k.idt)
        cr0 = CR0(rawValue: k.cr0)
        cr2 = k.cr2
        cr3 = k.cr3
        cr4 = CR4(rawValue: k.cr4)
        cr8 = k.cr8
        efer = EFER(rawValue: k.efer)
        apicBase = k.apic_base
        let bits = k.interrupt_bitmap
        interruptBitmap = InterruptBitmap(word0: bits.0, word1: bits.1, word2: bits.2, word3: bits.3)
    }

    var kernelValue: kvm_sregs {
        var k = kvm_sregs()
        k.cs = cs.kernelValue; k.ds = ds.kernelValue; k.es = es.kernelValue
        k.fs = fs.kernelValue; k.gs = gs.kernelValue; k.ss = ss.kernelValue
        k.tr = tr.kernelValue; k.ldt = ldt.kernelValue
        k.gdt = gdt.kernelValue; k.idt = idt.kernelValue
        k.cr0 = cr0.rawValue
        k.cr2 = cr2
        k.cr3 = cr3
        k.cr4 = cr4.rawValue
        k.cr8 = cr8
        k.efer = efer.rawValue
        k.apic_base = apicBase
        let bits = interruptBitmap
        k.interrupt_bitmap = (bits.word0, bits.word1, bits.word2, bits.word3)
        return k
    }
}
