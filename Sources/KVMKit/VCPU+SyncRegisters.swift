internal import CKVM

/// Register groups KVM can exchange through `kvm_run` instead of ioctls (`KVM_SYNC_X86_*`).
public struct SyncRegisterSet: OptionSet, Hashable, Sendable {
    /// The `KVM_SYNC_X86_*` bits.
    public var rawValue: UInt64
    /// Makes a set from its bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The general registers, RIP and RFLAGS (`KVM_SYNC_X86_REGS`, the `kvm_regs` of ``Registers``).
    public static let registers = Self(rawValue: CKVM_SYNC_X86_REGS)
    /// The special registers (`KVM_SYNC_X86_SREGS`, the `kvm_sregs` of ``SpecialRegisters``).
    public static let specialRegisters = Self(rawValue: CKVM_SYNC_X86_SREGS)
    /// The event state (`KVM_SYNC_X86_EVENTS`, the `kvm_vcpu_events` of ``VCPUEvents``).
    public static let events = Self(rawValue: CKVM_SYNC_X86_EVENTS)
    /// All three.
    public static let all: Self = [.registers, .specialRegisters, .events]
}

// Synchronised registers: `kvm_run.kvm_valid_regs`, `kvm_run.kvm_dirty_regs` and `kvm_run.s.regs`. With a
// group in `syncedRegisterSets`, every KVM_RUN leaves a copy of it in kvm_run on exit, readable with no
// ioctl; a staged group is loaded by the next KVM_RUN, again with no ioctl of its own. Check
// `KVMSystem.extension(.syncRegs)` for the groups the kernel supports (7 = all three on x86); KVM_RUN fails
// with EINVAL for any other bit.

extension VCPU {
    /// The register groups KVM copies into `kvm_run` after every `KVM_RUN` (`kvm_run.kvm_valid_regs`).
    ///
    /// Read them with ``syncedRegisters()``, ``syncedSpecialRegisters()`` and ``syncedEvents()``.
    public var syncedRegisterSets: SyncRegisterSet {
        // SAFETY: the mapping is live while `self` exists; only this (the vCPU's) thread touches these
        // fields, outside KVM_RUN.
        get { unsafe SyncRegisterSet(rawValue: mapping.run.pointee.kvm_valid_regs) }
        set { unsafe mapping.run.pointee.kvm_valid_regs = newValue.rawValue }
    }

    /// The register groups staged for the next `KVM_RUN` to load (`kvm_run.kvm_dirty_regs`); KVM clears
    /// each bit as it loads the group.
    public var stagedRegisterSets: SyncRegisterSet {
        // SAFETY: as for `syncedRegisterSets`.
        unsafe SyncRegisterSet(rawValue: mapping.run.pointee.kvm_dirty_regs)
    }

    /// The general registers as the last `KVM_RUN` left them in `kvm_run.s.regs.regs` (valid when
    /// ``syncedRegisterSets`` contains ``SyncRegisterSet/registers``), or as last staged. No ioctl.
    public func syncedRegisters() -> Registers {
        // SAFETY: `ckvm_sync_regs` points inside the live kvm_run mapping; the vCPU thread owns it between
        // runs.
        unsafe Registers(ckvm_sync_regs(mapping.run).pointee.regs)
    }

    /// The special registers as the last `KVM_RUN` left them in `kvm_run.s.regs.sregs` (valid when
    /// ``syncedRegisterSets`` contains ``SyncRegisterSet/specialRegisters``), or as last staged. No ioctl.
    public func syncedSpecialRegisters() -> SpecialRegisters {
        // SAFETY: as in `syncedRegisters()`.
        unsafe SpecialRegisters(ckvm_sync_regs(mapping.run).pointee.sregs)
    }

    /// The event state as the last `KVM_RUN` left it in `kvm_run.s.regs.events` (valid when
    /// ``syncedRegisterSets`` contains ``SyncRegisterSet/events``), or as last staged. No ioctl.
    public func syncedEvents() -> VCPUEvents {
        // SAFETY: as in `syncedRegisters()`.
        unsafe VCPUEvents(ckvm_sync_regs(mapping.run).pointee.events)
    }

    /// Stages `registers` for the next `KVM_RUN` to load, as `KVM_SET_REGS` would but with no ioctl:
    /// writes `kvm_run.s.regs.regs` and sets ``SyncRegisterSet/registers`` in `kvm_run.kvm_dirty_regs`.
    /// Allocates nothing.
    public func stageRegisters(_ registers: Registers) {
        // SAFETY: as in `syncedRegisters()`.
        unsafe ckvm_sync_regs(mapping.run).pointee.regs = registers.kernelValue
        unsafe mapping.run.pointee.kvm_dirty_regs |= SyncRegisterSet.registers.rawValue
    }

    /// Stages `registers` for the next `KVM_RUN` to load, as `KVM_SET_SREGS` would but with no ioctl:
    /// writes `kvm_run.s.regs.sregs` and sets ``SyncRegisterSet/specialRegisters`` in
    /// `kvm_run.kvm_dirty_regs`. Start from ``syncedSpecialRegisters()`` or ``specialRegisters()``.
    public func stageSpecialRegisters(_ registers: SpecialRegisters) {
        // SAFETY: as in `syncedRegisters()`.
        unsafe ckvm_sync_regs(mapping.run).pointee.sregs = registers.kernelValue
        unsafe mapping.run.pointee.kvm_dirty_regs |= SyncRegisterSet.specialRegisters.rawValue
    }

    /// Stages `events` for the next `KVM_RUN` to load, as `KVM_SET_VCPU_EVENTS` would but with no ioctl:
    /// writes `kvm_run.s.regs.events` and sets ``SyncRegisterSet/events`` in `kvm_run.kvm_dirty_regs`.
    public func stageEvents(_ events: VCPUEvents) {
        // SAFETY: as in `syncedRegisters()`.
        unsafe ckvm_sync_regs(mapping.run).pointee.events = events.kernelValue
        unsafe mapping.run.pointee.kvm_dirty_regs |= SyncRegisterSet.events.rawValue
    }
}
