public import PageTables

/// Everything needed to build a ``Machine``: a value, so it can be checked, copied and printed.
public struct MachineConfiguration: Sendable {
    /// Which leaves the boot page tables may use.
    public enum PageSizePolicy: String, Sendable {
        /// 4 KiB leaves only.
        case small = "4k"
        /// The largest leaves the vCPU's CPUID allows, wherever alignment permits.
        case automatic = "auto"
    }

    /// Where the guest's console bytes go.
    public enum Console: Sendable {
        /// To the host process's standard output, flushed at each newline and at the end of the run.
        case standardOutput
        /// Into ``Machine/consoleOutput``.
        case capture
        /// Nowhere.
        case discard
    }

    /// The guest's architecture.
    public var architecture: Architecture
    /// The flat binary.
    public var image: [UInt8]
    /// Guest RAM in bytes.
    public var memorySize: UInt64 = Layout.defaultMemorySize
    /// Where the image is loaded (guest-physical, and virtual: RAM is identity-mapped).
    public var loadAddress: UInt64 = Layout.defaultLoadAddress
    /// Where the vCPU starts; `nil` means the load address.
    public var entryPoint: UInt64? = nil
    /// Mappings added on top of the default address space.
    public var extraMappings: [Mapping] = []
    /// Leaf sizes of the boot tables.
    public var pageSizePolicy: PageSizePolicy = .automatic
    /// How long the guest may run; `nil` for ever.
    public var timeout: Duration? = .seconds(10)
    /// Console destination.
    public var console: Console = .standardOutput
    /// Print every exit to standard error.
    public var trace: Bool = false
    /// The KVM device.
    public var kvmPath: String = "/dev/kvm"

    public init(architecture: Architecture, image: [UInt8]) {
        self.architecture = architecture
        self.image = image
    }

    /// The entry point actually used.
    public var effectiveEntryPoint: UInt64 { entryPoint ?? loadAddress }
}
