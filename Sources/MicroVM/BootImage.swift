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
    /// The boot-information block written at ``Layout/bootInfoAddress``.
    public private(set) var bootInfo: BootInfo
    /// The copy-on-write scratch frames still free: `[scratchNext, arenaBase)`.
    var scratchNext: UInt64

    /// Lays out RAM for `configuration` and builds the tables with `allowedLeafSizes`.
    ///
    /// - Parameters:
    ///   - configuration: the image, RAM size, load address and mappings to lay out.
    ///   - allowedLeafSizes: the large leaves the boot tables may use.
    ///   - memory: RAM to build in (e.g. a shared mapping another process also runs); by default fresh
    ///     anonymous memory. It must be zero-filled and exactly `configuration.memorySize` bytes.
    ///   - walkableLeafSizes: the large leaves the vCPU walks, if it is not just the allowed ones (plus
    ///     2 MiB on amd64): on amd64 the CPU's own (1 GiB with Page1GB) even when the
    ///     ``MachineConfiguration/PageSizePolicy/small`` policy allows none.
    /// - Throws: ``MachineError`` naming the first thing wrong with the configuration.
    public init(
        configuration: MachineConfiguration, allowedLeafSizes: AllowedLeafSizes, memory: GuestMemory? = nil,
        walkableLeafSizes: AllowedLeafSizes? = nil
    ) throws(MachineError) {
        self.configuration = configuration
        let plan = try MemoryPlan(configuration)
        let freshMemory = memory == nil
        let memory = try { () throws(MachineError) -> GuestMemory in
            if let memory { return memory }
            return try GuestMemory(size: configuration.memorySize)
        }()
        precondition(memory.size == configuration.memorySize, "guest memory must match the configured size")
        self.memory = memory
        arenaBase = plan.arenaBase
        arenaSize = plan.arenaSize
        scratchNext = plan.scratchBase

        switch configuration.imageKind {
        case .flat:
            memory.write(configuration.image, at: configuration.loadAddress)
        case .elf(let elf):
            // The plan put every segment inside RAM. Fresh anonymous memory reads zero already (clearing it
            // would only fault in the pages of a large bss); memory handed in gets its bss cleared.
            for (segment, bytes) in zip(elf.layout.segments, elf.contents) {
                memory.write(bytes, at: segment.physicalAddress)
                if !freshMemory {
                    memory.zero(
                        at: segment.physicalAddress + segment.fileSize, count: segment.memorySize - segment.fileSize)
                }
            }
        }
        do {
            addressSpace = try makeAddressSpace(
                architecture: configuration.architecture, memory: memory, arenaBase: plan.arenaBase,
                arenaSize: plan.arenaSize, allowedLeafSizes: allowedLeafSizes, walkableLeafSizes: walkableLeafSizes)
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
            arenaBase: plan.arenaBase, arenaSize: plan.arenaSize, loadAddress: plan.imageStart,
            imageSize: plan.imageSize, architecture: configuration.architecture,
            probeListAddress: 0, probeCount: 0, flags: [], mappings: configuration.extraMappings,
            segments: plan.segments.map(\.mapping),
            entryPoint: plan.segments.isEmpty ? nil : configuration.effectiveEntryPoint)
        bootInfo.write(to: memory, at: Layout.bootInfoAddress)
        X86Boot.writeGDT(to: memory, architecture: configuration.architecture)
    }

    /// The image of a snapshot, continued in `memory` (a private view of the snapshot's image): its tables
    /// where they are, its arena and scratch frames as the snapshot left them. Nothing is written.
    init(restoring snapshot: Snapshot, memory: GuestMemory, configuration: MachineConfiguration) {
        self.configuration = configuration
        self.memory = memory
        arenaBase = snapshot.arena.base
        arenaSize = snapshot.arena.end - snapshot.arena.base
        scratchNext = snapshot.scratchNext
        addressSpace = restoredAddressSpace(
            architecture: snapshot.architecture, memory: memory, arena: snapshot.arena, root: snapshot.roots[0],
            allowedLeafSizes: snapshot.allowedLeafSizes, walkableLeafSizes: snapshot.walkableLeafSizes)
        bootInfo = BootInfo(
            memorySize: configuration.memorySize, tableRoot: snapshot.roots[0], arenaBase: arenaBase,
            arenaSize: arenaSize, loadAddress: configuration.loadAddress, imageSize: 0,
            architecture: configuration.architecture, probeListAddress: 0, probeCount: 0, flags: [],
            mappings: configuration.extraMappings)
    }

    /// Places `probes` at ``Layout/probeListAddress`` and lists them in the boot-information block.
    ///
    /// When a probe runs at CPL 3 (``Probe/userMode``, or ``BootInfo/Flags/probesInUserMode``), the probe
    /// runtime's code and its user stack must be user pages: the image's pages and ``Layout/userStack`` are
    /// made user-accessible (same frames, same permissions; the engine sets U/S in the tables above them).
    /// - Throws: ``MachineError/tooManyProbes(count:maximum:)`` when they do not fit the scratch area,
    ///   ``MachineError/tablesFailed(_:)`` when the tables cannot be changed.
    @_spi(Testing) public func setProbes(_ probes: [Probe], flags: BootInfo.Flags = []) throws(MachineError) {
        guard probes.count <= Probe.maximumCount else {
            throw .tooManyProbes(count: probes.count, maximum: Probe.maximumCount)
        }
        if flags.contains(.probesInUserMode) || probes.contains(where: \.userMode) {
            let load = configuration.loadAddress
            let imagePages = (UInt64(configuration.image.count) + 0xFFF) & ~0xFFF
            do {
                try addressSpace.protect(
                    virtualBase: load, length: imagePages, kind: .readWriteExecute, userAccessible: true)
                try addressSpace.protect(
                    virtualBase: Layout.userStack.lowerBound, length: UInt64(Layout.userStack.count),
                    kind: .readWrite, userAccessible: true)
            } catch {
                throw .tablesFailed(error)
            }
        }
        for (index, probe) in probes.enumerated() {
            probe.write(to: memory, at: Layout.probeListAddress + UInt64(index) * Probe.recordSize)
        }
        bootInfo.probeListAddress = probes.isEmpty ? 0 : Layout.probeListAddress
        bootInfo.probeCount = UInt32(probes.count)
        bootInfo.flags = flags
        bootInfo.write(to: memory, at: Layout.bootInfoAddress)
    }

    /// Resolves a write fault at `virtualAddress` on a copy-on-write page: copies its frame into a fresh
    /// scratch frame, then remaps the page writable (keeping execute and U/S) to the copy, on the live
    /// tables in guest RAM. A copy-on-write page inside a large leaf is split by the engine first; only the
    /// faulting 4 KiB page moves.
    ///
    /// - Parameter userAccess: whether the write came from CPL 3 (the #PF error code's U/S bit): then a
    ///   page user mode may not access is a protection fault, not copy-on-write, and is left alone.
    /// - Returns: the page, its original frame and its new frame; `nil` when the page is not copy-on-write
    ///   (or not a user page, for a user access; or no scratch frame is left).
    public func resolveCopyOnWrite(at virtualAddress: UInt64, userAccess: Bool = false) -> (
        virtualAddress: UInt64, from: UInt64, to: UInt64
    )? {
        let page = virtualAddress & ~0xFFF
        guard let translation = try? addressSpace.lookup(page),
            case .copyOnWrite(let executable) = translation.kind,
            translation.userAccessible || !userAccess,
            scratchNext + 4096 <= arenaBase
        else { return nil }
        addressSpace.arenaMayBeDirty()  // the guest has run: tables it freed may hold its writes
        let frame = scratchNext
        guard memory.copy(from: translation.physicalAddress, to: frame, count: 4096) else { return nil }
        do {
            try addressSpace.map(
                Mapping(
                    physicalBase: frame, virtualBase: page, length: 4096,
                    kind: .basic(writable: true, executable: executable),
                    userAccessible: translation.userAccessible))
        } catch {
            return nil
        }
        scratchNext += 4096
        return (page, translation.physicalAddress, frame)
    }

}
