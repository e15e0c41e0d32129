internal import CKVM
@preconcurrency internal import Glibc

/// One KVM virtual machine: its guest-physical memory map and its vCPUs.
///
/// Owns the VM file descriptor and closes it in `deinit`. vCPUs made from it hold their own descriptors;
/// the kernel keeps the VM alive while any of them is open. Made by ``KVMSystem/makeVM()``.
public final class VirtualMachine {
    /// The VM file descriptor.
    let fd: Int32
    /// The size of each vCPU's `kvm_run` mapping, from `KVM_GET_VCPU_MMAP_SIZE`.
    let vcpuMmapSize: Int

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
    ///   - readOnly: the guest may not write the slot (`KVM_MEM_READONLY`; its writes exit as MMIO).
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_USER_MEMORY_REGION` (EINVAL for
    ///   misalignment, EEXIST for an overlap with another slot).
    public func setUserMemoryRegion(
        slot: UInt32, guestPhysicalAddress: UInt64, size: UInt64,
        hostAddress: UnsafeMutableRawPointer, readOnly: Bool = false
    ) throws(KVMError) {
        var region = kvm_userspace_memory_region()
        region.slot = slot
        region.flags = readOnly ? CKVM_MEM_READONLY : 0
        region.guest_phys_addr = guestPhysicalAddress
        region.memory_size = size
        region.userspace_addr = UInt64(UInt(bitPattern: hostAddress))
        try invoke(fd, .setUserMemoryRegion, &region)
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
    ///
    /// - Parameter id: the vCPU (APIC) id, 0 for the boot processor.
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_CREATE_VCPU`, `mmap(kvm_run)` or
    ///   `KVM_SET_SIGNAL_MASK`.
    public func makeVCPU(id: UInt32 = 0) throws(KVMError) -> VCPU {
        let vcpuFD = try invoke(fd, .createVCPU, UInt(id))
        let mapping: RunMapping
        do throws(KVMError) {
            mapping = try RunMapping(vcpuFD: vcpuFD, size: vcpuMmapSize)
        } catch {
            close(vcpuFD)
            throw error
        }
        // From here the VCPU owns the descriptor and the mapping; its deinit releases them on failure.
        let vcpu = VCPU(fd: vcpuFD, mapping: mapping)
        try vcpu.unblockKickSignalDuringRun()
        return vcpu
    }
}
