internal import CKVM
internal import Glibc

/// One vCPU's dirty ring: an array of `struct kvm_dirty_gfn` shared with the kernel, mapped from the vCPU
/// descriptor at page offset `KVM_DIRTY_LOG_PAGE_OFFSET` (64), and the index of the next entry to harvest.
///
/// The kernel appends one entry per logged guest write to a slot made with
/// ``VirtualMachine/MemoryRegionFlags/logDirtyPages`` (it sets `flags` to DIRTY last, with release
/// semantics); userspace harvests entries in order, marks each RESET, and calls `KVM_RESET_DIRTY_RINGS`,
/// which re-arms write tracking for those pages and frees the entries. Owned by one ``VCPU`` and used on
/// its thread only.
///
/// `@safe`: it owns its mapping (unmapped once, in deinit) and reads only the `count` entries inside it.
@safe final class DirtyRing {
    /// The first entry of the ring.
    let entries: UnsafeMutablePointer<kvm_dirty_gfn>
    /// The number of entries, a power of two.
    let count: UInt32
    /// The length of the mapping in bytes.
    let byteCount: Int
    /// The free-running index of the next entry to look at (the ring position is `fetchIndex & (count - 1)`).
    private(set) var fetchIndex: UInt32 = 0

    /// Maps the dirty ring of `vcpuFD`, `byteCount` bytes as enabled on its VM.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `mmap(dirty ring)`.
    init(vcpuFD: Int32, byteCount: Int) throws(KVMError) {
        let stride = MemoryLayout<kvm_dirty_gfn>.stride
        precondition(byteCount > 0 && byteCount % stride == 0 && (byteCount / stride).nonzeroBitCount == 1)
        let offset = off_t(CKVM_DIRTY_LOG_PAGE_OFFSET) * off_t(sysconf(Int32(_SC_PAGESIZE)))
        // SAFETY: a fresh shared mapping of the vCPU descriptor at the documented dirty-ring offset, of the
        // size the VM's ring was enabled with; read-write because harvesting writes the entries' flags. It
        // is unmapped exactly once, in deinit.
        let address = unsafe mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_SHARED, vcpuFD, offset)
        guard let address = unsafe address, unsafe address != MAP_FAILED else {
            throw .callFailed(call: "mmap(dirty ring)", errno: errno)
        }
        // SAFETY: the mapping is page-aligned and holds `byteCount / stride` entries, which the kernel
        // keeps valid `kvm_dirty_gfn` values (any bit pattern is one).
        unsafe entries = unsafe address.bindMemory(to: kvm_dirty_gfn.self, capacity: byteCount / stride)
        count = UInt32(byteCount / stride)
        self.byteCount = byteCount
    }

    deinit {
        // SAFETY: exactly the mapping made in init; its owner, the VCPU, is gone.
        unsafe munmap(UnsafeMutableRawPointer(entries), byteCount)
    }

    /// Whether at least `count` entries (1 to the ring's size) wait to be harvested: the kernel fills entries
    /// in order, so that is whether the `count`-th from the fetch index is marked dirty. One load.
    @inline(__always)
    func holds(atLeast count: Int) -> Bool {
        precondition(count >= 1 && count <= Int(self.count))
        // SAFETY: the index is masked to the ring's size, so the entry lies inside the mapping.
        let entry = unsafe entries + Int((fetchIndex &+ UInt32(count - 1)) & (self.count &- 1))
        return unsafe ckvm_dirty_gfn_load_flags(entry) & CKVM_DIRTY_GFN_F_DIRTY != 0
    }

    /// Walks the ring from the fetch index: calls `body` for each entry marked dirty, marks it for reset,
    /// and stops at the first entry that is not dirty. Returns how many entries it harvested.
    ///
    /// Allocates nothing. Each entry's `flags` is loaded with acquire semantics (so `slot` and `offset`
    /// are the kernel's) and the reset mark is stored with release semantics (so they were read before
    /// the kernel may reuse the entry).
    @inline(__always)
    func harvest(_ body: (_ slot: UInt32, _ pageOffset: UInt64) -> Void) -> Int {
        let mask = count &- 1
        var harvested = 0
        while true {
            // SAFETY: `fetchIndex & mask` < `count`, so the entry lies inside the mapping.
            let entry = unsafe entries + Int(fetchIndex & mask)
            guard unsafe ckvm_dirty_gfn_load_flags(entry) & CKVM_DIRTY_GFN_F_DIRTY != 0 else { return harvested }
            // SAFETY: the acquire load above ordered these reads after the kernel's writes of the entry;
            // the kernel does not touch a dirty entry until userspace marks it reset.
            unsafe body(entry.pointee.slot, entry.pointee.offset)
            unsafe ckvm_dirty_gfn_mark_reset(entry)
            fetchIndex &+= 1
            harvested += 1
        }
    }
}

extension VirtualMachine {
    /// Gives every vCPU created from now on a dirty ring of `byteCount` bytes (`byteCount / 16` entries),
    /// choosing `KVM_CAP_DIRTY_LOG_RING_ACQ_REL` where the kernel has it and `KVM_CAP_DIRTY_LOG_RING`
    /// otherwise.
    ///
    /// Call it before ``makeVCPU(id:)`` (the kernel refuses once a vCPU exists). Only slots made with
    /// ``MemoryRegionFlags/logDirtyPages`` are logged; a VM with a ring has no dirty bitmap
    /// (``dirtyLog(slot:into:)`` fails). The corresponding KVM ioctl is `KVM_ENABLE_CAP` on the VM.
    ///
    /// - Parameter byteCount: a power of two from 4096 up to what `KVM_CHECK_EXTENSION` reports for
    ///   ``KVMCapability/dirtyLogRingAcqRel`` (1 MiB on kvm_pvm).
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_ENABLE_CAP` (EINVAL for a size that is
    ///   not a power of two of at least 4096 or once a vCPU exists, E2BIG above the maximum), or naming
    ///   `KVM_CAP_DIRTY_LOG_RING` with ENOTSUP when neither capability is reported.
    public func enableDirtyRing(byteCount: Int) throws(KVMError) {
        precondition(byteCount > 0 && byteCount <= Int(UInt32.max))
        let capability: KVMCapability
        if self.extension(.dirtyLogRingAcqRel) > 0 {
            capability = .dirtyLogRingAcqRel
        } else if self.extension(.dirtyLogRing) > 0 {
            capability = .dirtyLogRing
        } else {
            throw .callFailed(call: "KVM_CAP_DIRTY_LOG_RING", errno: ENOTSUP)
        }
        try enableCapability(capability, arguments: [UInt64(byteCount)])
        dirtyRingByteCount = byteCount
    }

    /// Lets KVM reuse every dirty-ring entry marked harvested, on all vCPUs, and re-arms write tracking for
    /// their pages (so the guest's next write to them is logged again). Returns how many entries it reset.
    ///
    /// The corresponding KVM ioctl is `KVM_RESET_DIRTY_RINGS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_RESET_DIRTY_RINGS`.
    @discardableResult
    public func resetDirtyRings() throws(KVMError) -> Int {
        Int(try invoke(fd, .resetDirtyRings))
    }

    /// Harvests `vcpu`'s dirty ring (``VCPU/collectDirtyRing(_:)``) and, if it held any entry, resets the
    /// rings (``resetDirtyRings()``). Returns the number of entries harvested.
    ///
    /// `body` is called once per entry with the slot (address space << 16 | slot number; address space 1
    /// is SMM) and the page offset inside that slot (guest-physical address = slot base + offset × 4096).
    /// The same page may be reported more than once: on kvm_pvm every emulated write adds an entry.
    /// Allocates nothing: a microsecond-scale reset path can call it every cycle.
    ///
    /// On kvm_pvm the ring's soft limit is not checked within a run: a `KVM_RUN` that
    /// logs up to ``VCPU/dirtyRingCapacity`` writes is reported in full, but one more write is lost and
    /// wedges the ring for the VM's life (later writes are never reported; runs keep exiting with
    /// ``VCPUExit/dirtyRingFull``). A result equal to the capacity therefore means the page set may be
    /// incomplete: fall back to a full copy and a new VM. Size the ring above the writes a run can make, or
    /// use the dirty bitmap, which cannot overflow.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_RESET_DIRTY_RINGS`.
    @discardableResult
    public func harvestDirtyRing(of vcpu: VCPU, _ body: (_ slot: UInt32, _ pageOffset: UInt64) -> Void) throws(KVMError)
        -> Int
    {
        let harvested = vcpu.collectDirtyRing(body)
        if harvested > 0 { try resetDirtyRings() }
        return harvested
    }
}

extension VCPU {
    /// The number of entries in this vCPU's dirty ring, 0 if its VM has no ring.
    public var dirtyRingCapacity: Int { dirtyRing.map { Int($0.count) } ?? 0 }

    /// Whether at least `count` entries of this vCPU's dirty ring wait to be harvested (false without a
    /// ring): a cheap test (one load) for deciding when to harvest between runs.
    public func dirtyRingHolds(atLeast count: Int) -> Bool {
        guard let dirtyRing else { return false }
        return dirtyRing.holds(atLeast: Swift.min(Swift.max(count, 1), Int(dirtyRing.count)))
    }

    /// Walks this vCPU's dirty ring from where the last walk stopped: calls `body` with (slot, page offset)
    /// for every entry the kernel marked dirty, and marks each one harvested. Returns how many there were.
    ///
    /// Harvested entries are only recycled by ``VirtualMachine/resetDirtyRings()``; with several vCPUs,
    /// collect each and reset once. Allocates nothing. Traps if the VM has no dirty ring
    /// (``VirtualMachine/enableDirtyRing(byteCount:)`` before the vCPU was made).
    @discardableResult
    public func collectDirtyRing(_ body: (_ slot: UInt32, _ pageOffset: UInt64) -> Void) -> Int {
        guard let dirtyRing else { preconditionFailure("the VM has no dirty ring: enableDirtyRing before makeVCPU") }
        return dirtyRing.harvest(body)
    }
}
