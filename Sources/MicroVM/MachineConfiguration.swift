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
    ///
    /// The machine holds at most ``Machine/consoleBufferLimit`` bytes before it hands them on, so a guest
    /// that prints without end never grows host memory: a sink that cannot keep up slows the guest down
    /// (the vCPU waits while the sink runs), and capture keeps the first `limit` bytes and counts the rest
    /// in ``Machine/consoleBytesDropped``.
    public enum Console: Sendable {
        /// Handed to `sink` in chunks: at each newline, whenever ``Machine/consoleBufferLimit`` bytes are
        /// pending, and at the end of the run. An error the sink throws ends the run with
        /// ``RunError/consoleFailed(_:)`` (or with the timeout or interruption that made the sink give up).
        case sink(@Sendable (_ bytes: [UInt8]) throws -> Void)
        /// Into ``Machine/consoleOutput``, up to `limit` bytes.
        case capture(limit: Int)
        /// Nowhere.
        case discard

        /// Capture up to 1 MiB.
        public static var capture: Console { .capture(limit: 1 << 20) }
    }

    /// What kind of image the guest is.
    public enum ImageKind: Equatable, Sendable {
        /// The flat binary ``MachineConfiguration/image``, loaded at ``MachineConfiguration/loadAddress``.
        case flat
        /// The segments of an ELF file, each placed at its physical address and mapped at its virtual
        /// address with its own permissions (README, "ELF guests"); ``MachineConfiguration/image`` and
        /// ``MachineConfiguration/loadAddress`` are not used.
        case elf(ELFImage)
    }

    /// The guest's architecture.
    public var architecture: Architecture
    /// The flat binary (with ``ImageKind/flat``).
    public var image: [UInt8]
    /// Flat bytes or ELF segments.
    public var imageKind: ImageKind = .flat
    /// Guest RAM in bytes.
    public var memorySize: UInt64 = Layout.defaultMemorySize
    /// Where a flat image is loaded (guest-physical, and virtual: RAM is identity-mapped).
    public var loadAddress: UInt64 = Layout.defaultLoadAddress
    /// Where the vCPU starts; `nil` means the load address of a flat image, `e_entry` of an ELF image.
    /// With an ELF image it must lie inside an executable segment.
    public var entryPoint: UInt64? = nil
    /// Mappings added on top of the default address space.
    public var extraMappings: [Mapping] = []
    /// Leaf sizes of the boot tables.
    public var pageSizePolicy: PageSizePolicy = .automatic
    /// How long the guest may run; `nil` for ever.
    public var timeout: Duration? = .seconds(10)
    /// Console destination (by default the bytes are dropped).
    public var console: Console = .discard
    /// Called with one line per VM exit (`[exit 3] io out port 0x3f8 size 1 value 0x68 (RIP 0x100012)`),
    /// for tracing; `nil` for none.
    public var trace: (@Sendable (_ line: String) -> Void)? = nil
    /// The KVM device.
    public var kvmPath: String = "/dev/kvm"
    /// Whether the machine can be reset to a snapshot taken of it (``Machine/snapshot()``,
    /// ``Machine/reset(allState:)``): KVM then logs the pages the guest writes in a dirty ring, which must be set up
    /// before the vCPU exists. Machines restored from a snapshot always can.
    public var resettable = false
    /// Entries of the dirty ring of a resettable machine (a power of two, clamped to what KVM allows; each
    /// is 16 bytes of kernel memory).
    ///
    /// The machine collects the ring at each reset, and every ``resetTick`` while a run lasts that long.
    /// Between two collections the ring holds an entry per page the guest wrote (on a KVM that emulates
    /// guest code, such as kvm_pvm, one per write instruction), across any number of runs and calls. When
    /// it fills, the run ends with ``RunError/dirtyTrackingLost`` and the next reset rebuilds the VM: size
    /// it above the writes the guest makes between two resets.
    public var dirtyRingEntries = 65_536
    /// How often a resettable machine collects its dirty ring while the guest runs (a run shorter than this
    /// is not stopped for it).
    public var resetTick: Duration = .milliseconds(5)

    /// A configuration for `image` with every other field at its default: 16 MiB of RAM, the image loaded
    /// and entered at 0x100000, the largest leaves the vCPU allows, a 10-second timeout, the console
    /// discarded, not resettable.
    ///
    /// - Parameters:
    ///   - architecture: the paging mode the guest starts in: amd64 long mode or i686 protected mode.
    ///   - image: the flat binary, loaded at ``loadAddress``.
    public init(architecture: Architecture, image: [UInt8]) {
        self.architecture = architecture
        self.image = image
    }

    /// A configuration for an ELF guest, with the ELF file's architecture.
    public init(elf: ELFImage) {
        self.architecture = elf.layout.architecture
        self.image = []
        self.imageKind = .elf(elf)
    }

    /// Checks everything about the layout that does not depend on the image's bytes, for an image of
    /// `imageSize` bytes: what a caller reading the image from a file can ask before reading it.
    /// - Parameter imageSize: the size of the image the machine would load.
    /// - Throws: the ``MachineError`` that building a machine with such an image would throw first.
    public func validateLayout(imageSize: UInt64) throws(MachineError) {
        _ = try MemoryPlan(self, imageSize: imageSize)
    }

    /// Checks everything about the layout of an ELF guest that its headers decide (where its segments go
    /// in this machine's RAM, against the reserved areas and the extra mappings, the entry point): what a
    /// caller reading the file can ask before reading the segments' bytes. ``imageKind`` is not used.
    /// - Throws: the ``MachineError`` that building a machine with such an image would throw first.
    public func validateLayout(elf: ELFLayout) throws(MachineError) {
        _ = try MemoryPlan(self, elf: elf)
    }

    /// The entry point of an ELF image of `layout`: ``entryPoint`` if set, else `e_entry`.
    func effectiveEntryPoint(elf layout: ELFLayout) -> UInt64 { entryPoint ?? layout.entryPoint }

    /// The entry point actually used.
    public var effectiveEntryPoint: UInt64 {
        if let entryPoint { return entryPoint }
        if case .elf(let elf) = imageKind { return elf.layout.entryPoint }
        return loadAddress
    }
}
