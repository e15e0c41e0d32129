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
}
