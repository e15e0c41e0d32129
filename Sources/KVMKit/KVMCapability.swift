internal import CKVM

/// A KVM capability number, as passed to `KVM_CHECK_EXTENSION`.
///
/// The named constants are the ones microvm consults; any other `KVM_CAP_*` value can be made with
/// ``init(rawValue:)``.
public struct KVMCapability: RawRepresentable, Hashable, Sendable {
    /// The kernel's `KVM_CAP_*` number.
    public var rawValue: Int32

    /// Makes a capability from its `KVM_CAP_*` number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// User-allocated guest memory slots (`KVM_SET_USER_MEMORY_REGION`). The kernel name is
    /// `KVM_CAP_USER_MEMORY`.
    public static let userMemory = Self(rawValue: KVM_CAP_USER_MEMORY)

    /// `KVM_GET_SUPPORTED_CPUID` / `KVM_SET_CPUID2` are available. The kernel name is `KVM_CAP_EXT_CPUID`.
    public static let extendedCPUID = Self(rawValue: KVM_CAP_EXT_CPUID)

    /// The recommended maximum number of vCPUs per VM. The kernel name is `KVM_CAP_NR_VCPUS`.
    public static let nrVCPUs = Self(rawValue: KVM_CAP_NR_VCPUS)

    /// The maximum number of memory slots per VM. The kernel name is `KVM_CAP_NR_MEMSLOTS`.
    public static let nrMemslots = Self(rawValue: KVM_CAP_NR_MEMSLOTS)

    /// Changes to the host mapping of guest memory are seen by the guest. The kernel name is
    /// `KVM_CAP_SYNC_MMU`.
    public static let syncMMU = Self(rawValue: KVM_CAP_SYNC_MMU)

    /// `KVM_SET_GUEST_DEBUG` (single-step, hardware breakpoints). The kernel name is
    /// `KVM_CAP_SET_GUEST_DEBUG`.
    public static let setGuestDebug = Self(rawValue: KVM_CAP_SET_GUEST_DEBUG)

    /// The hard maximum number of vCPUs per VM. The kernel name is `KVM_CAP_MAX_VCPUS`.
    public static let maxVCPUs = Self(rawValue: KVM_CAP_MAX_VCPUS)

    /// Read-only memory slots (`KVM_MEM_READONLY`). The kernel name is `KVM_CAP_READONLY_MEM`.
    public static let readonlyMem = Self(rawValue: KVM_CAP_READONLY_MEM)

    /// `kvm_run.immediate_exit`, which makes `KVM_RUN` return EINTR at once. The kernel name is
    /// `KVM_CAP_IMMEDIATE_EXIT`.
    public static let immediateExit = Self(rawValue: KVM_CAP_IMMEDIATE_EXIT)

    /// `KVM_ENABLE_CAP` on a vCPU descriptor. The kernel name is `KVM_CAP_ENABLE_CAP`.
    public static let enableCap = Self(rawValue: KVM_CAP_ENABLE_CAP)

    /// `KVM_ENABLE_CAP` on a VM descriptor. The kernel name is `KVM_CAP_ENABLE_CAP_VM`.
    public static let enableCapVM = Self(rawValue: KVM_CAP_ENABLE_CAP_VM)

    /// `kvm_run.kvm_valid_regs` / `kvm_dirty_regs`; the check returns the mask of supported
    /// ``SyncRegisterSet`` bits (7 = registers, special registers, events). The kernel name is
    /// `KVM_CAP_SYNC_REGS`.
    public static let syncRegs = Self(rawValue: KVM_CAP_SYNC_REGS)

    /// `KVM_GET_XSAVE` / `KVM_SET_XSAVE`. The kernel name is `KVM_CAP_XSAVE`.
    public static let xsave = Self(rawValue: KVM_CAP_XSAVE)

    /// `KVM_GET_XSAVE2`; the check (on a VM descriptor) returns the size in bytes of the XSAVE buffer, at
    /// least 4096. The kernel name is `KVM_CAP_XSAVE2`.
    public static let xsave2 = Self(rawValue: KVM_CAP_XSAVE2)

    /// `KVM_GET_XCRS` / `KVM_SET_XCRS`. The kernel name is `KVM_CAP_XCRS`.
    public static let xcrs = Self(rawValue: KVM_CAP_XCRS)

    /// `KVM_GET_VCPU_EVENTS` / `KVM_SET_VCPU_EVENTS`. The kernel name is `KVM_CAP_VCPU_EVENTS`.
    public static let vcpuEvents = Self(rawValue: KVM_CAP_VCPU_EVENTS)

    /// `KVM_GET_DEBUGREGS` / `KVM_SET_DEBUGREGS`. The kernel name is `KVM_CAP_DEBUGREGS`.
    public static let debugRegs = Self(rawValue: KVM_CAP_DEBUGREGS)

    /// The per-vCPU dirty ring, with plain (non acquire/release) ordering; the check returns the maximum
    /// ring size in bytes. The kernel name is `KVM_CAP_DIRTY_LOG_RING`.
    public static let dirtyLogRing = Self(rawValue: KVM_CAP_DIRTY_LOG_RING)

    /// The per-vCPU dirty ring with acquire/release ordering on entry flags (what KVMKit's harvest uses);
    /// the check returns the maximum ring size in bytes. The kernel name is `KVM_CAP_DIRTY_LOG_RING_ACQ_REL`.
    public static let dirtyLogRingAcqRel = Self(rawValue: KVM_CAP_DIRTY_LOG_RING_ACQ_REL)

    /// `KVM_CLEAR_DIRTY_LOG`, and `KVM_GET_DIRTY_LOG` that no longer re-protects pages once enabled; the
    /// check returns the supported flags (1 = manual protect, 2 = initially all set). The kernel name is
    /// `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`.
    public static let manualDirtyLogProtect2 = Self(rawValue: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)

    /// `kvm_run.internal.ndata` and `data` are filled for internal errors. The kernel name is
    /// `KVM_CAP_INTERNAL_ERROR_DATA`.
    public static let internalErrorData = Self(rawValue: KVM_CAP_INTERNAL_ERROR_DATA)
}
