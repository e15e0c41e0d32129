import Glibc
import KVMKit
import PageTables

/// The x86 state a guest starts in: the GDT in guest memory, and the vCPU's segment, control and general
/// registers (Intel SDM Vol. 3A §9.8 "Initializing IA-32e mode", §9.9 "Mode switching").
enum X86Boot {
    /// GDT descriptors (SDM Vol. 3A §3.4.5). Accessed bits are pre-set so the CPU never writes the GDT.
    /// Base 0, limit 0xFFFFF with G=1, present, DPL 0, S=1.
    static let code64: UInt64 = 0x00AF_9B00_0000_FFFF  // type 0xB execute/read/accessed, L=1, D=0
    static let code32: UInt64 = 0x00CF_9B00_0000_FFFF  // type 0xB, L=0, D=1
    static let data: UInt64 = 0x00CF_9300_0000_FFFF  // type 0x3 read/write/accessed, D/B=1

    static func writeGDT(to memory: GuestMemory, architecture: Architecture) {
        memory.store(UInt64(0), at: Layout.gdtAddress)
        memory.store(architecture == .amd64 ? code64 : code32, at: Layout.gdtAddress + 8)
        memory.store(data, at: Layout.gdtAddress + 16)
    }

    /// Sets the vCPU up to start at `entry` with paging on and `cr3` as the root.
    ///
    /// - Throws: ``MachineError/pagingModeUnsupported(architecture:detail:)`` when KVM drops CR0.PG for a
    ///   32-bit guest (kvm_pvm cannot run 32-bit paging), otherwise ``MachineError/kvmFailed(_:)``.
    static func enter(_ vcpu: VCPU, architecture: Architecture, cr3: UInt64, pse: Bool, entry: UInt64)
        throws(MachineError)
    {
        do {
            var special = try vcpu.specialRegisters()
            let long = architecture == .amd64
            let code = Segment(
                base: 0, limit: 0xFFFF_FFFF, selector: Layout.codeSelector, type: 0xB, present: true, dpl: 0,
                db: !long, s: true, l: long, g: true)
            let data = Segment(
                base: 0, limit: 0xFFFF_FFFF, selector: Layout.dataSelector, type: 0x3, present: true, dpl: 0,
                db: true, s: true, l: false, g: true)
            special.cs = code
            special.ds = data
            special.es = data
            special.fs = data
            special.gs = data
            special.ss = data
            special.gdt = DescriptorTable(base: Layout.gdtAddress, limit: 23)
            special.idt = DescriptorTable(base: 0, limit: 0)
            special.cr0 = [.protectionEnable, .monitorCoprocessor, .numericError, .writeProtect, .paging]
            special.cr3 = cr3
            special.cr4 = [.osfxsr, .osxmmexcpt]
            if long {
                special.cr4.insert(.pae)
                special.efer = [.lme, .lma, .nxe]
            } else {
                if pse { special.cr4.insert(.pse) }
                special.efer = []
            }
            try vcpu.setSpecialRegisters(special)
            if !long {
                // Some KVMs accept the registers but silently drop CR0.PG without long mode: read it back.
                let applied = try vcpu.specialRegisters()
                guard applied.cr0.contains(.paging) else {
                    throw MachineError.pagingModeUnsupported(architecture: architecture, detail: pagingRefusalDetail())
                }
            }
            var registers = Registers()
            registers.rip = entry
            registers.rsp = Layout.stackTop
            registers.rdi = Layout.bootInfoAddress
            registers.rflags = 0x2
            try vcpu.setRegisters(registers)
            // kvm_run's copies start as the entry state, so the host can read RIP and CR3 there from the
            // start (the first entry loads the same values).
            vcpu.stageRegisters(registers)
            vcpu.stageSpecialRegisters(special)
        } catch let error as MachineError {
            throw error
        } catch let error as KVMError {
            throw .kvmFailed(error)
        } catch {
            fatalError("unreachable: \(error)")
        }
    }

    /// Names the cause: the kvm_pvm backend (shadow paging without VMX/SVM) cannot run 32-bit paging.
    static func pagingRefusalDetail() -> String {
        let backend = unsafe access("/sys/module/kvm_pvm", F_OK) == 0 ? "kvm_pvm" : "this KVM backend"
        return "\(backend) drops CR0.PG for 32-bit protected mode (no 32-bit paging); "
            + "run i686 guests on a host whose /dev/kvm is served by kvm_intel or kvm_amd"
    }
}
