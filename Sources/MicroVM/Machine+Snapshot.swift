import Glibc
import KVMKit
public import PageTables

extension Machine {
    /// Most address spaces a machine keeps track of (the host's and those registered).
    public static let maximumRoots = 64

    // MARK: Snapshot

    /// Freezes the machine as it stands: its memory (copied into a sealed in-memory file, zero pages left
    /// as holes), its vCPU (registers, special registers, XSAVE, XCRs, MSRs, events, debug registers), the
    /// roots of its address spaces and its page-table arena.
    ///
    /// Take it while the machine is stopped: before its first run, after a run returned (`hlt`, the exit
    /// port, or a guest's snapshot request), not after a failed one. A machine made ``MachineConfiguration/resettable``
    /// can then be reset to the snapshot (it starts tracking what the guest writes from here, and its own
    /// RAM becomes a private view of the snapshot, so it shares the unwritten pages with restored machines).
    ///
    /// - Throws: ``SnapshotError/notStopped(_:)`` after a failed run; ``SnapshotError/kvmFailed(_:)`` or
    ///   ``SnapshotError/systemCallFailed(_:errno:)`` when reading the vCPU or copying memory fails.
    public func snapshot() throws(SnapshotError) -> Snapshot {
        if let poisoned { throw .notStopped(poisoned) }
        let state: VCPUState
        do {
            state = try VCPUState.capture(vcpu, msrs: host.snapshotMSRs)
        } catch {
            throw .kvmFailed(error)
        }
        let copy = try SnapshotImage(copying: memory)
        let snapshot = Snapshot(
            configuration: configuration, image: copy, vcpu: state, roots: roots, arena: addressSpace.arena,
            scratchNext: image.scratchNext, allowedLeafSizes: addressSpace.allowedLeafSizes,
            walkableLeafSizes: addressSpace.walkableLeafSizes, calls: callInterface, waitingForCall: waitingForCall)
        if guestWrites != nil { try adopt(snapshot) }
        return snapshot
    }

    /// Makes `snapshot` (just taken of this machine) its reset point: RAM becomes a private view of the
    /// snapshot's image, and what the guest and the host write is tracked from here.
    func adopt(_ snapshot: Snapshot) throws(SnapshotError) {
        do {
            try memory.replaceContents(withPrivateViewOf: snapshot.image)
        } catch {
            throw .systemCallFailed(
                "mmap(private view of the snapshot)",
                errno: { if case .memoryUnavailable(_, let code) = error { return code } else { return 0 } }())
        }
        // Entries logged before the snapshot are not writes since it.
        _ = try? kvm!.vm.harvestDirtyRing(of: vcpu) { _, _ in }
        guestWrites?.clear()
        memory.startLoggingWrites()
        resetPoint = snapshot
    }

    // MARK: Restore

    /// Builds a machine from a snapshot: a new VM whose RAM is a private view of the snapshot's image (no
    /// copy; machines restored from one snapshot share every page none of them writes), its vCPU set to the
    /// snapshot's state, its page tables and arena as the snapshot left them. It continues where the snapshot
    /// was taken, and can be reset back to it (``reset(allState:)``).
    ///
    /// - Parameters:
    ///   - snapshot: the snapshot to continue from; any number of machines may restore from one.
    ///   - host: an already open KVM to share; by default `configuration.kvmPath` is opened.
    ///   - configuration: where the console goes, the timeout, tracing and the KVM device; its layout fields
    ///     (architecture, memory, image, mappings) are ignored: they are the snapshot's. By default the
    ///     snapshot's own, with the console discarded.
    /// - Throws: ``SnapshotError`` naming what failed.
    public convenience init(
        restoring snapshot: Snapshot, host: KVMHost? = nil, configuration: MachineConfiguration? = nil
    ) throws(SnapshotError) {
        var settings = snapshot.configuration
        if let configuration {
            settings.console = configuration.console
            settings.timeout = configuration.timeout
            settings.trace = configuration.trace
            settings.kvmPath = configuration.kvmPath
            settings.resetTick = configuration.resetTick
            settings.dirtyRingEntries = configuration.dirtyRingEntries
        }
        settings.resettable = true
        // KVM answers EINVAL when it will not take a state: a corrupt record, or one from a CPU with features
        // this one lacks. That is the snapshot's fault, not the host's, and is reported as such.
        var refused: KVMError? = nil
        do {
            let host = try host ?? KVMHost(path: settings.kvmPath)
            guard
                host.allowedLeafSizes(for: snapshot.architecture).union(snapshot.architecture == .amd64 ? .size2M : [])
                    .isSuperset(of: snapshot.walkableLeafSizes)
            else {
                throw SnapshotError.hostUnsuitable("its tables use large pages this vCPU cannot walk")
            }
            let memory = try GuestMemory(privateViewOf: snapshot.image)
            let image = BootImage(restoring: snapshot, memory: memory, configuration: settings)
            try self.init(host: host, image: image, resettable: true) { (vcpu) throws(MachineError) in
                do throws(KVMError) {
                    try snapshot.vcpu.apply(to: vcpu)
                } catch {
                    if error.errno == EINVAL { refused = error }
                    throw .kvmFailed(error)
                }
            }
        } catch let error as SnapshotError {
            throw error
        } catch let error as MachineError {
            if let refused { throw .stateRefused(refused) }
            throw .machineFailed(error)
        } catch {
            fatalError("unreachable: \(error)")
        }
        roots = snapshot.roots
        callInterface = snapshot.calls
        waitingForCall = snapshot.waitingForCall
        memory.startLoggingWrites()
        resetPoint = snapshot
        // kvm_run's copies of the registers start out as the snapshot's, so they can be read and restaged
        // before the first run (KVM loads the same values).
        vcpu.stageRegisters(snapshot.vcpu.registers)
        vcpu.stageSpecialRegisters(snapshot.vcpu.specialRegisters)
        vcpu.stageEvents(snapshot.vcpu.events)
    }

    /// When host-side table changes moved the host's root (movable ops copy the tables they change), points
    /// CR3 at the new root, if the vCPU was using the old one, and records it as ``roots`` first entry.
    func followHostRoot() throws(KVMError) {
        let root = addressSpace.rootPhysicalAddress
        guard let old = roots.first, root != old else { return }
        roots[0] = root
        let mask: UInt64 = configuration.architecture == .amd64 ? AMD64.frameAddressMask : I686.frameAddressMask
        // kvm_run holds the current (or staged) special registers: change CR3 there, with no ioctl.
        var special = vcpu.syncedSpecialRegisters()
        guard special.cr3 & mask == old else { return }
        special.cr3 = root | (special.cr3 & ~mask)
        vcpu.stageSpecialRegisters(special)
    }

    // MARK: Reset

    /// Brings the machine back to its snapshot (the one it was restored from, or the last one taken of it
    /// if it was made resettable), in place, in microseconds: it copies back only the pages written since —
    /// the pages KVM's dirty ring reports the guest wrote, and those the host wrote for it (hypercall
    /// results, copy-on-write copies, table edits) — puts the page-table arena and the roots back, and
    /// stages the snapshot's registers, special registers and event state in `kvm_run`, so the next run
    /// loads them without a vCPU ioctl. The guest's own A/D bits play no part.
    ///
    /// With `allState`, the XSAVE area, XCRs, MSRs and debug registers are restored too (four more
    /// ioctls): needed only if the guest changed FPU/SSE state or MSRs, which guests for this host
    /// (an emulating KVM cannot run x87 or SSE) rarely do.
    ///
    /// If the ring lost entries (the guest wrote more between two exits than it holds), the reset restores
    /// all of memory (one `mmap`) in a new VM instead: slower, still exact.
    ///
    /// - Throws: ``SnapshotError/notResettable(_:)`` without a snapshot; ``SnapshotError/kvmFailed(_:)``
    ///   when collecting the ring or rebuilding the VM fails (the machine then must not run).
    public func reset(allState: Bool = false) throws(SnapshotError) {
        guard let point = resetPoint, let guestWrites else {
            throw .notResettable(
                "it has no snapshot to go back to (restore it from one, or make it resettable and take one)")
        }
        collectGuestWrites()
        if dirtyRingLost {
            try rebuild(from: point)
        } else {
            for page in unsafe guestWrites.pages { memory.restorePage(page, from: point.image) }
            if let hostWrites = unsafe memory.writeLog {
                for page in unsafe hostWrites.pages where !guestWrites.contains(page) {
                    memory.restorePage(page, from: point.image)
                }
            }
            vcpu.stageRegisters(point.vcpu.registers)
            vcpu.stageSpecialRegisters(point.vcpu.specialRegisters)
            vcpu.stageEvents(point.vcpu.events)
            if allState {
                do {
                    try vcpu.setXSave(point.vcpu.xsave)
                    if let xcrs = point.vcpu.extendedControlRegisters { try vcpu.setExtendedControlRegisters(xcrs) }
                    _ = try vcpu.setModelSpecificRegisters(point.vcpu.modelSpecificRegisters)
                    try vcpu.setDebugRegisters(point.vcpu.debugRegisters)
                } catch {
                    poisoned = "a failed reset"
                    throw .kvmFailed(error)
                }
            }
        }
        guestWrites.clear()
        unsafe memory.writeLog?.clear()
        addressSpace.restore(arena: point.arena, root: point.roots[0])
        image.scratchNext = point.scratchNext
        roots = point.roots
        callInterface = point.calls
        waitingForCall = point.waitingForCall
        poisoned = nil
        interrupter.clear()
        exitCount = 0
        reports.removeAll(keepingCapacity: true)
        copyOnWriteResolutions.removeAll(keepingCapacity: true)
        pendingConsole.removeAll(keepingCapacity: true)
    }

    /// Collects the dirty ring into ``guestWrites``; marks the ring lost if it may have overflowed.
    func collectGuestWrites() {
        guard let guestWrites, let kvm, !dirtyRingLost else { return }
        do {
            let collected = try kvm.vm.harvestDirtyRing(of: kvm.vcpu) { slot, page in
                if slot == 0 { guestWrites.mark(page << 12, count: 4096) }
            }
            // A full ring may have dropped writes (KVM does not always stop the guest in time).
            if collected >= kvm.vcpu.dirtyRingCapacity { dirtyRingLost = true }
        } catch {
            dirtyRingLost = true
        }
    }

    /// Restores all of memory and the whole vCPU state in a new VM: the way back when the dirty ring can no
    /// longer say what the guest wrote.
    func rebuild(from point: Snapshot) throws(SnapshotError) {
        do {
            try memory.replaceContents(withPrivateViewOf: point.image)
        } catch {
            poisoned = "a failed reset"
            throw .machineFailed(error)
        }
        do {
            let objects = try Self.makeKVMObjects(
                host: host, memory: memory, configuration: configuration, resettable: true)
            try point.vcpu.apply(to: objects.vcpu)
            objects.vcpu.syncedRegisterSets = .all
            if let old = kvm.take() { Reaper.shared.retire([old]) }
            kvm = objects
            interrupter.replace(kicker: objects.vcpu.makeKicker())
        } catch {
            poisoned = "a failed reset"
            throw .kvmFailed(error)
        }
        dirtyRingLost = false
        memory.startLoggingWrites()
    }

    // MARK: Address spaces

    /// Registers the root of another address space (a table the guest built, or one the host built with
    /// ``makeAddressSpace(sharing:)``), so snapshots keep it and ``addressSpace(at:)`` opens it.
    /// - Returns: its index in ``roots`` (the same index if it is already registered).
    /// - Throws: ``AddressSpaceError/outsideMemory(_:)`` for a root that is not a page-aligned table in RAM,
    ///   ``AddressSpaceError/tooMany(_:)`` past ``maximumRoots``.
    @discardableResult
    public func registerRoot(_ root: UInt64) throws(AddressSpaceError) -> Int {
        let mask: UInt64 = configuration.architecture == .amd64 ? AMD64.frameAddressMask : I686.frameAddressMask
        guard root & ~mask == 0, memory.contains(root, count: 4096) else { throw .outsideMemory(root) }
        if let index = roots.firstIndex(of: root) { return index }
        guard roots.count < Self.maximumRoots else { throw .tooMany(Self.maximumRoots) }
        roots.append(root)
        return roots.count - 1
    }

    /// Builds another address space for the guest: a new root in the page-table arena whose entries for the
    /// `shared` ranges are the boot space's own (the same tables below them, not copies), empty elsewhere;
    /// map into it with ``addressSpace(at:)``. The guest switches to it by loading its root
    /// (``roots``) into CR3; snapshots keep it, and compaction keeps the sharing.
    ///
    /// - Parameter shared: ranges of the boot space to share, in whole blocks of 2 MiB (amd64) or 4 MiB
    ///   (i686), each shared in the largest aligned blocks that fit (a 1 GiB-aligned GiB shares one page
    ///   directory, a 512 GiB-aligned block one PDPT).
    /// - Returns: its index in ``roots``.
    public func makeAddressSpace(sharing shared: [(virtualBase: UInt64, length: UInt64)] = []) throws(AddressSpaceError)
        -> Int
    {
        let space: any AddressSpace
        do {
            space = try addressSpace.makeSpace(sharing: shared)
        } catch {
            throw .tables(error)
        }
        return try registerRoot(space.rootPhysicalAddress)
    }

    /// The address space at `index` in ``roots``, to read or change (index 0 is ``addressSpace``), or `nil`.
    public func addressSpace(at index: Int) -> (any AddressSpace)? {
        guard roots.indices.contains(index) else { return nil }
        return index == 0 ? addressSpace : addressSpace.space(root: roots[index])
    }
}

/// Why an address space could not be built or registered.
public enum AddressSpaceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The root is not a page-aligned table inside guest RAM.
    case outsideMemory(UInt64)
    /// The machine already knows as many roots as it keeps.
    case tooMany(Int)
    /// The engine refused: a shared range not in whole blocks, a full arena.
    case tables(PageTableError)

    /// One line for a person, naming what went wrong and the values involved.
    public var description: String {
        switch self {
        case .outsideMemory(let root): "root \(hex(root)) is not a page-aligned table inside guest RAM"
        case .tooMany(let maximum): "the machine already has \(maximum) address spaces, the most it keeps"
        case .tables(let error): "\(error)"
        }
    }
}

extension HostWriteLog {
    /// Whether `page` is in the log.
    @inline(__always) func contains(_ page: UInt32) -> Bool {
        unsafe bits[Int(page >> 6)] & (1 << (UInt64(page) & 63)) != 0
    }
}

extension KVMHost {
    /// The MSRs of ``VCPUState/savedMSRs`` this KVM lists (`KVM_GET_MSR_INDEX_LIST`).
    var snapshotMSRs: [UInt32] {
        guard let listed = try? system.msrIndexList() else { return [] }
        let available = Set(listed)
        return VCPUState.savedMSRs.filter(available.contains)
    }
}
