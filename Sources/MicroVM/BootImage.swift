public import PageTables

/// Everything a guest boots from, built without KVM: guest RAM holding the image, the page tables, the
/// GDT and the boot-information block.
///
/// ``Machine`` boots it on KVM; the QEMU oracle tests export the same bytes and boot them on an emulated
/// MMU, so both run exactly the tables the engine built.
public final class BootImage {
    /// What it was built from.
    public let configuration: MachineConfiguration
    /// Guest RAM.
    public let memory: GuestMemory
    /// The guest's page tables, live in RAM.
    public let addressSpace: any AddressSpace
    /// The page-table arena at the top of RAM.
    public let arenaBase: UInt64, arenaSize: UInt64
    /// One past the last page of the image (scratch frames for copy-on-write come from above it).
    public let imageEnd: UInt64
    /// The boot-information block written at ``Layout/bootInfoAddress``.
    public private(set) var bootInfo: BootInfo

    /// Lays out RAM for `configuration` and builds the tables with `allowedLeafSizes`.
    /// - Throws: ``MachineError`` naming the first thing wrong with the configuration.
    public init(configuration: MachineConfiguration, allowedLeafSizes: AllowedLeafSizes) throws(MachineError) {
        self.configuration = configuration
        let plan = try MemoryPlan(configuration)
        let memory = try GuestMemory(size: configuration.memorySize)
        self.memory = memory
        arenaBase = plan.arenaBase
        arenaSize = plan.arenaSize
        imageEnd = plan.imageEnd

        memory.write(configuration.image, at: configuration.loadAddress)
        do {
            addressSpace = try makeAddressSpace(
                architecture: configuration.architecture, memory: memory, arenaBase: plan.arenaBase,
                arenaSize: plan.arenaSize, allowedLeafSizes: allowedLeafSizes)
            for mapping in plan.defaultMappings { try addressSpace.map(mapping) }
        } catch {
            throw .tablesFailed(error)
        }
        for mapping in configuration.extraMappings {
            do throws(PageTableError) {
                try addressSpace.map(mapping)
            } catch .outOfTableMemory {
                throw .tablesFailed(.outOfTableMemory)
            } catch {
                throw .mappingRejected(mapping: mapping, reason: error)
            }
        }
        bootInfo = BootInfo(
            memorySize: configuration.memorySize, tableRoot: addressSpace.rootPhysicalAddress,
            arenaBase: plan.arenaBase, arenaSize: plan.arenaSize, loadAddress: configuration.loadAddress,
            imageSize: UInt64(configuration.image.count), architecture: configuration.architecture,
            probeListAddress: 0, probeCount: 0, flags: [], mappings: configuration.extraMappings)
        bootInfo.write(to: memory, at: Layout.bootInfoAddress)
        X86Boot.writeGDT(to: memory, architecture: configuration.architecture)
    }

    /// Places `probes` at ``Layout/probeListAddress`` and lists them in the boot-information block.
    /// - Throws: ``MachineError/tooManyProbes(count:maximum:)`` when they do not fit the scratch area.
    public func setProbes(_ probes: [Probe], flags: BootInfo.Flags = []) throws(MachineError) {
        guard probes.count <= Probe.maximumCount else {
            throw .tooManyProbes(count: probes.count, maximum: Probe.maximumCount)
        }
        for (index, probe) in probes.enumerated() {
            probe.write(to: memory, at: Layout.probeListAddress + UInt64(index) * Probe.recordSize)
        }
        bootInfo.probeListAddress = probes.isEmpty ? 0 : Layout.probeListAddress
        bootInfo.probeCount = UInt32(probes.count)
        bootInfo.flags = flags
        bootInfo.write(to: memory, at: Layout.bootInfoAddress)
    }
}
