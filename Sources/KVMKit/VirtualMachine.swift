internal import CKVM
internal import Glibc

/// One KVM virtual machine: its guest-physical memory map and its vCPUs.
///
/// Owns the VM file descriptor and closes it in `deinit`. vCPUs made from it hold their own descriptors;
/// the kernel keeps the VM alive while any of them is open. Made by ``KVMSystem/makeVM()``.
public final class VirtualMachine {
    /// The VM file descriptor.
    let fd: Int32
    /// The size of each vCPU's `kvm_run` mapping, from `KVM_GET_VCPU_MMAP_SIZE`.
    let vcpuMmapSize: Int
    /// The size in bytes of each vCPU's dirty ring, 0 while the ring is not enabled.
    public internal(set) var dirtyRingByteCount = 0
    /// The number of pages of each memory slot, by slot number: bounds the dirty bitmaps.
    var slotPageCounts: [UInt32: UInt64] = [:]

    init(fd: Int32, vcpuMmapSize: Int) {
        self.fd = fd
        self.vcpuMmapSize = vcpuMmapSize
    }

    deinit {
        close(fd)
    }

    /// Maps `size` bytes of host memory at `hostAddress` into the guest at `guestPhysicalAddress`, as
    /// memory slot `slot`; a `size` of 0 deletes the slot.
    ///
    /// The guest reads and writes the host memory directly, so it must stay mapped (and must not be
    /// reused) for as long as the slot exists; KVMKit does not own it. Addresses and size must be
    /// page-aligned. The corresponding KVM ioctl is `KVM_SET_USER_MEMORY_REGION`.
    ///
    /// - Parameters:
    ///   - slot: the slot number, below ``KVMCapability/nrMemslots``; reusing one replaces it.
    ///   - guestPhysicalAddress: where the guest sees the first byte.
    ///   - size: the length in bytes.
    ///   - hostAddress: the host mapping that backs the slot.
    ///   - flags: read-only, dirty logging.
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_USER_MEMORY_REGION` (EINVAL for
    ///   misalignment, EEXIST for an overlap with another slot).
    public func setUserMemoryRegion(
        slot: UInt32, guestPhysicalAddress: UInt64, size: UInt64,
        hostAddress: UnsafeMutableRawPointer, flags: MemoryRegionFlags = []
    ) throws(KVMError) {
        var region = kvm_userspace_memory_region()
        region.slot = slot
        region.flags = flags.rawValue
        region.guest_phys_addr = guestPhysicalAddress
        region.memory_size = size
        region.userspace_addr = UInt64(UInt(bitPattern: hostAddress))
        try invoke(fd, .setUserMemoryRegion, &region)
        slotPageCounts[slot] = size == 0 ? nil : size / 4096
    }

    /// Options of a memory slot (`kvm_userspace_memory_region.flags`).
    public struct MemoryRegionFlags: OptionSet, Hashable, Sendable {
        /// The `KVM_MEM_*` bits.
        public var rawValue: UInt32
        /// Makes a set from its bits.
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// KVM logs the guest's writes to the slot, in the dirty bitmap (``VirtualMachine/dirtyLog(slot:into:)``)
        /// or the dirty ring (``VirtualMachine/enableDirtyRing(byteCount:)``). `KVM_MEM_LOG_DIRTY_PAGES`.
        public static let logDirtyPages = Self(rawValue: CKVM_MEM_LOG_DIRTY_PAGES)

        /// The guest may read but not write the slot; its writes exit as ``VCPUExit/mmio(address:size:writeValue:)``
        /// (``KVMCapability/readonlyMem``). `KVM_MEM_READONLY`.
        public static let readOnly = Self(rawValue: CKVM_MEM_READONLY)
    }

    /// How far the kernel supports `capability` for this VM: 0 when it does not, otherwise 1 or a
    /// capability-specific number (``KVMCapability/xsave2`` answers its buffer size only here).
    ///
    /// The corresponding KVM ioctl is `KVM_CHECK_EXTENSION` on the VM descriptor. A failing check is
    /// reported as 0, "not supported".
    public func `extension`(_ capability: KVMCapability) -> Int {
        switch rawIoctl(fd, .checkExtension, UInt(bitPattern: Int(capability.rawValue))) {
        case .success(let result): return Int(result)
        case .failure: return 0
        }
    }

    /// Enables `capability` for the whole VM, with up to four capability-specific arguments.
    ///
    /// The corresponding KVM ioctl is `KVM_ENABLE_CAP` on the VM descriptor (``KVMCapability/enableCapVM``).
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_ENABLE_CAP` (EINVAL for an unknown
    ///   capability or bad arguments).
    public func enableCapability(
        _ capability: KVMCapability, flags: UInt32 = 0, arguments: [UInt64] = []
    ) throws(KVMError) {
        try KVMKit.enableCapability(fd: fd, capability, flags: flags, arguments: arguments)
    }

    /// Places the three pages Intel VMX needs for real-mode emulation at `guestPhysicalAddress`.
    ///
    /// Only needed on Intel hosts without "unrestricted guest" that run real-mode code; harmless
    /// elsewhere. Choose an address outside guest RAM and below 4 GiB. The corresponding KVM ioctl is
    /// `KVM_SET_TSS_ADDR`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_TSS_ADDR`.
    public func setTSSAddress(_ guestPhysicalAddress: UInt32) throws(KVMError) {
        _ = try invoke(fd, .setTSSAddress, UInt(guestPhysicalAddress))
    }

    /// Creates virtual CPU `id`, maps its `kvm_run` structure, and arms it for kicks.
    ///
    /// Create the vCPU on the thread that will run it, and use it from that thread only. Its `KVM_RUN`
    /// signal mask becomes the calling thread's mask minus ``KVMSystem/kickSignal``, and the no-op kick
    /// handler is installed (``KVMSystem/installKickSignalHandler()``), so that a ``VCPUKicker`` or a
    /// ``VCPUAlarm`` can interrupt it even on a thread that blocks that signal. The corresponding KVM
    /// ioctls are `KVM_CREATE_VCPU` and `KVM_SET_SIGNAL_MASK`, with an `mmap` of the vCPU descriptor.
    /// If ``enableDirtyRing(byteCount:)`` was called, the vCPU's dirty ring is mapped too.
    ///
    /// - Parameter id: the vCPU (APIC) id, 0 for the boot processor.
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_CREATE_VCPU`, `mmap(kvm_run)`,
    ///   `mmap(dirty ring)` or `KVM_SET_SIGNAL_MASK`.
    public func makeVCPU(id: UInt32 = 0) throws(KVMError) -> VCPU {
        let vcpuFD = try invoke(fd, .createVCPU, UInt(id))
        let mapping: RunMapping
        do throws(KVMError) {
            mapping = try RunMapping(vcpuFD: vcpuFD, size: vcpuMmapSize)
        } catch {
            close(vcpuFD)
            throw error
        }
        let ring: DirtyRing?
        do throws(KVMError) {
            ring = dirtyRingByteCount > 0 ? try DirtyRing(vcpuFD: vcpuFD, byteCount: dirtyRingByteCount) : nil
        } catch {
            close(vcpuFD)  // `mapping` unmaps itself when released
            throw error
        }
        // From here the VCPU owns the descriptor and the mappings; its deinit releases them on failure.
        let vcpu = VCPU(fd: vcpuFD, mapping: mapping, dirtyRing: ring, xsave2Size: self.extension(.xsave2))
        try vcpu.unblockKickSignalDuringRun()
        return vcpu
    }
}

/// `KVM_ENABLE_CAP` on a VM or vCPU descriptor.
func enableCapability(fd: Int32, _ capability: KVMCapability, flags: UInt32, arguments: [UInt64]) throws(KVMError) {
    precondition(arguments.count <= 4, "KVM_ENABLE_CAP takes at most four arguments")
    var request = kvm_enable_cap()
    request.cap = UInt32(bitPattern: capability.rawValue)
    request.flags = flags
    let padded = arguments + Array(repeating: 0, count: 4 - arguments.count)
    request.args = (padded[0], padded[1], padded[2], padded[3])
    try invoke(fd, .enableCapability, &request)
}
