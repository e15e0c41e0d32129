internal import CKVM
internal import Glibc

/// An open handle to the KVM subsystem (`/dev/kvm`): the root object that creates virtual machines.
///
/// Owns one file descriptor and closes it in `deinit`. Virtual machines made from it keep their own file
/// descriptors, so they may outlive it.
public final class KVMSystem: Sendable {
    /// The only KVM API version this code speaks (it has been 12 since Linux 2.6.22).
    public static let expectedAPIVersion = 12

    /// The file descriptor of the KVM device.
    let fd: Int32

    /// The size in bytes of each vCPU's shared `kvm_run` mapping (and the data areas that follow it).
    ///
    /// The corresponding KVM ioctl is `KVM_GET_VCPU_MMAP_SIZE`, queried once at ``init(path:)``.
    public let vcpuMmapSize: Int

    /// Opens the KVM device and checks its API version.
    ///
    /// The device is opened read-write and close-on-exec. The corresponding KVM ioctl is
    /// `KVM_GET_API_VERSION`.
    ///
    /// - Parameter path: the device node, normally `/dev/kvm`.
    /// - Throws: ``KVMError/cannotOpen(path:errno:)`` if the device cannot be opened,
    ///   ``KVMError/unsupportedAPIVersion(got:need:)`` if it does not speak version 12, or
    ///   ``KVMError/callFailed(call:errno:)`` if a query fails.
    public init(path: String = "/dev/kvm") throws(KVMError) {
        let fd = try Self.openDevice(path: path)
        // From here on, `fd` must be closed on every failure path (deinit does not run for a failed init).
        do throws(KVMError) {
            let version = Int(try invoke(fd, .getAPIVersion))
            guard version == Self.expectedAPIVersion else {
                throw KVMError.unsupportedAPIVersion(got: version, need: Self.expectedAPIVersion)
            }
            let size = Int(try invoke(fd, .getVCPUMmapSize))
            guard size >= MemoryLayout<kvm_run>.size else {
                throw KVMError.callFailed(call: KVMRequest.getVCPUMmapSize.name, errno: EINVAL)
            }
            self.vcpuMmapSize = size
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    /// Whether `path` can be opened read-write: the precondition for ``init(path:)``, without the API checks.
    ///
    /// Meant for gating tests and for choosing a friendly message before trying to boot.
    public static func isUsable(path: String = "/dev/kvm") -> Bool {
        guard let fd = try? openDevice(path: path) else { return false }
        close(fd)
        return true
    }

    /// How far the kernel supports `capability`: 0 when it does not, otherwise 1 or a capability-specific
    /// number (for example the number of memory slots for ``KVMCapability/nrMemslots``).
    ///
    /// The corresponding KVM ioctl is `KVM_CHECK_EXTENSION`. A failing check (which the kernel does not do
    /// for a valid descriptor) is reported as 0, "not supported".
    public func `extension`(_ capability: KVMCapability) -> Int {
        let value = UInt(bitPattern: Int(capability.rawValue))
        switch rawIoctl(fd, .checkExtension, value) {
        case .success(let result): return Int(result)
        case .failure: return 0
        }
    }

    /// The CPUID leaves this KVM can present to a guest: the host's, filtered to what KVM virtualises.
    ///
    /// Pass them (possibly edited) to ``VCPU/setCPUID(_:)``. The corresponding KVM ioctl is
    /// `KVM_GET_SUPPORTED_CPUID`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_SUPPORTED_CPUID`.
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        // `kvm_cpuid2` ends in a flexible array the kernel fills; it answers E2BIG while `nent` is too
        // small. Start near today's real sizes (50-100 leaves) and double up to a generous bound.
        var capacity = 128
        while true {
            do throws(KVMError) {
                return unsafe try CPUIDEntry.withKernelBuffer(capacity: capacity) { header throws(KVMError) in
                    unsafe try invoke(fd, .getSupportedCPUID, pointer: header)
                }
            } catch let error where error.errno == E2BIG && capacity < 4096 {
                capacity *= 2
            }
        }
    }

    /// The MSRs KVM can save and restore for a vCPU: the indices to pass to
    /// ``VCPU/modelSpecificRegisters(_:)`` for a snapshot.
    ///
    /// The corresponding KVM ioctl is `KVM_GET_MSR_INDEX_LIST`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_MSR_INDEX_LIST`.
    public func msrIndexList() throws(KVMError) -> [UInt32] {
        // `struct kvm_msr_list` is a u32 count followed by that many u32 indices; the kernel answers E2BIG
        // and the count it needs while the buffer is too small.
        var capacity = 128
        while true {
            var buffer = [UInt32](repeating: 0, count: 1 + capacity)
            buffer[0] = UInt32(capacity)
            do throws(KVMError) {
                try invoke(fd, .getMSRIndexList, buffer: &buffer)
            } catch let error where error.errno == E2BIG && capacity < 65536 {
                capacity = Swift.max(Int(buffer[0]), capacity * 2)
                continue
            }
            let count = Int(buffer[0])
            precondition(count <= capacity, "kernel reported more MSR indices than the buffer holds")
            return Array(buffer[1..<1 + count])
        }
    }

    /// Creates an empty virtual machine (no memory, no vCPUs).
    ///
    /// The corresponding KVM ioctl is `KVM_CREATE_VM` (machine type 0, the default).
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_CREATE_VM`.
    public func makeVM() throws(KVMError) -> VirtualMachine {
        let vmFD = try invoke(fd, .createVM, 0)
        return VirtualMachine(fd: vmFD, vcpuMmapSize: vcpuMmapSize)
    }

    /// Opens `path` read-write and close-on-exec, retrying EINTR.
    private static func openDevice(path: String) throws(KVMError) -> Int32 {
        while true {
            let fd = unsafe open(path, O_RDWR | O_CLOEXEC)
            if fd >= 0 { return fd }
            let code = errno
            if code != EINTR { throw .cannotOpen(path: path, errno: code) }
        }
    }
}
