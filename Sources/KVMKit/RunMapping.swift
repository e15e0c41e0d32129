internal import CKVM
internal import Glibc
import Synchronization

/// The shared `kvm_run` page(s) of one vCPU: mapped from the vCPU descriptor, unmapped when the last
/// owner (the ``VCPU`` or one of its ``VCPUKicker``s) goes away.
///
/// Shared so that a kicker on another thread never writes into unmapped memory, even if the vCPU was
/// released first. `@unchecked Sendable` because it holds a raw pointer: the pointer itself never changes,
/// the only field touched from other threads is `immediate_exit`, and that goes through atomic C helpers;
/// `vcpuAlive` is a `Mutex`; everything else is read and written only by the vCPU's thread,
/// between `KVM_RUN`s.
///
/// `@safe`: it owns the mapping (unmapped once, in deinit) and only touches fields inside it.
@safe final class RunMapping: @unchecked Sendable {
    /// The start of the mapping, as the kernel's `struct kvm_run`.
    let run: UnsafeMutablePointer<kvm_run>
    /// The length of the mapping in bytes (`KVM_GET_VCPU_MMAP_SIZE`); exit data areas lie inside it.
    let size: Int
    /// Whether the owning ``VCPU`` still exists; kicks after it is gone do nothing. Held across a kick, so
    /// that no signal is sent once the vCPU is gone.
    private let vcpuAlive = Mutex(true)

    /// Maps the `kvm_run` area of `vcpuFD`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `mmap(kvm_run)`.
    init(vcpuFD: Int32, size: Int) throws(KVMError) {
        // SAFETY: a fresh shared mapping of the vCPU descriptor at offset 0, the documented way to reach
        // `kvm_run`; `size` is what KVM_GET_VCPU_MMAP_SIZE returned, which is at least `sizeof(kvm_run)`
        // (checked in KVMSystem.init). It is unmapped exactly once, in deinit.
        let address = unsafe mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpuFD, 0)
        guard let address = unsafe address, unsafe address != MAP_FAILED else {
            throw .callFailed(call: "mmap(kvm_run)", errno: errno)
        }
        // SAFETY: the mapping is page-aligned (so aligned for kvm_run) and at least sizeof(kvm_run) long;
        // the kernel owns its contents, which are a valid kvm_run at all times.
        unsafe self.run = unsafe address.bindMemory(to: kvm_run.self, capacity: 1)
        self.size = size
    }

    deinit {
        // SAFETY: `run` and `size` are exactly the mapping made in init; no owner is left to use it.
        unsafe munmap(UnsafeMutableRawPointer(run), size)
    }

    /// Marks the owning vCPU as gone: later kicks are no-ops.
    func retire() {
        vcpuAlive.withLock { $0 = false }
    }

    /// Sets `immediate_exit` and signals `thread`, unless the vCPU is gone.
    func kick(thread: pthread_t, signal: Int32) {
        vcpuAlive.withLock { alive in
            guard alive else { return }
            // SAFETY: `run` is mapped for as long as this object exists; the store is atomic, so it does
            // not race with the vCPU thread or the kernel reading the byte.
            unsafe ckvm_store_immediate_exit(run, 1)
            // `thread` is the vCPU's thread, recorded on it by VCPU.makeKicker(); it is still running as
            // long as the VCPU exists (the documented contract), so the id is valid.
            _ = pthread_kill(thread, signal)
        }
    }
}
