public import KVMKit
public import PageTables

/// An open `/dev/kvm` and what it reported once: its supported CPUID and, from that, which large leaves the
/// vCPUs can walk. Share one between machines built on the same thread to skip the per-machine probing.
public final class KVMHost: Sendable {
    /// The system handle.
    public let system: KVMSystem
    /// `KVM_GET_SUPPORTED_CPUID`, handed to every vCPU (EFER.NXE is refused without it).
    public let supportedCPUID: [CPUIDEntry]

    /// Opens `path` and reads its capabilities.
    /// - Throws: ``MachineError/kvmUnavailable(_:)`` when the device cannot be opened or is not KVM.
    public init(path: String = "/dev/kvm") throws(MachineError) {
        do {
            system = try KVMSystem(path: path)
        } catch {
            throw .kvmUnavailable(error)
        }
        do {
            supportedCPUID = try system.supportedCPUID()
        } catch {
            throw .kvmFailed(error)
        }
    }

    /// The large leaves the vCPU's CPUID allows for `architecture`: 2 MiB always in long mode; 1 GiB with
    /// CPUID.80000001H:EDX.Page1GB; 4 MiB on i686 with CPUID.01H:EDX.PSE.
    public func allowedLeafSizes(for architecture: Architecture) -> AllowedLeafSizes {
        switch architecture {
        case .amd64: supportedCPUID.supportsPage1GB ? [.size2M, .size1G] : [.size2M]
        case .i686: supportedCPUID.supportsPSE ? [.size4M] : []
        }
    }
}
