internal import CKVM
internal import Glibc

/// One KVM ioctl request: the code the kernel dispatches on, and the name errors report.
///
/// This table is the only place KVMKit names request codes; every ioctl goes through ``invoke(_:_:)``
/// or ``invoke(_:_:_:)`` below, which turn `-1` into a ``KVMError`` naming the request.
struct KVMRequest: Sendable {
    let code: UInt
    let name: String

    // System (/dev/kvm).
    static let getAPIVersion = Self(code: CKVM_GET_API_VERSION, name: "KVM_GET_API_VERSION")
    static let createVM = Self(code: CKVM_CREATE_VM, name: "KVM_CREATE_VM")
    static let checkExtension = Self(code: CKVM_CHECK_EXTENSION, name: "KVM_CHECK_EXTENSION")
    static let getVCPUMmapSize = Self(code: CKVM_GET_VCPU_MMAP_SIZE, name: "KVM_GET_VCPU_MMAP_SIZE")
    static let getSupportedCPUID = Self(code: CKVM_GET_SUPPORTED_CPUID, name: "KVM_GET_SUPPORTED_CPUID")
    static let getMSRIndexList = Self(code: CKVM_GET_MSR_INDEX_LIST, name: "KVM_GET_MSR_INDEX_LIST")

    // VM.
    static let setUserMemoryRegion = Self(code: CKVM_SET_USER_MEMORY_REGION, name: "KVM_SET_USER_MEMORY_REGION")
    static let createVCPU = Self(code: CKVM_CREATE_VCPU, name: "KVM_CREATE_VCPU")
    static let setTSSAddress = Self(code: CKVM_SET_TSS_ADDR, name: "KVM_SET_TSS_ADDR")
    static let enableCapability = Self(code: CKVM_ENABLE_CAP, name: "KVM_ENABLE_CAP")  // VM and vCPU
    static let getDirtyLog = Self(code: CKVM_GET_DIRTY_LOG, name: "KVM_GET_DIRTY_LOG")
    static let clearDirtyLog = Self(code: CKVM_CLEAR_DIRTY_LOG, name: "KVM_CLEAR_DIRTY_LOG")
    static let resetDirtyRings = Self(code: CKVM_RESET_DIRTY_RINGS, name: "KVM_RESET_DIRTY_RINGS")

    // vCPU.
    static let run = Self(code: CKVM_RUN, name: "KVM_RUN")
    static let getRegisters = Self(code: CKVM_GET_REGS, name: "KVM_GET_REGS")
    static let setRegisters = Self(code: CKVM_SET_REGS, name: "KVM_SET_REGS")
    static let getSpecialRegisters = Self(code: CKVM_GET_SREGS, name: "KVM_GET_SREGS")
    static let setSpecialRegisters = Self(code: CKVM_SET_SREGS, name: "KVM_SET_SREGS")
    static let setCPUID2 = Self(code: CKVM_SET_CPUID2, name: "KVM_SET_CPUID2")
    static let translate = Self(code: CKVM_TRANSLATE, name: "KVM_TRANSLATE")
    static let setSignalMask = Self(code: CKVM_SET_SIGNAL_MASK, name: "KVM_SET_SIGNAL_MASK")
    static let getXSave = Self(code: CKVM_GET_XSAVE, name: "KVM_GET_XSAVE")
    static let getXSave2 = Self(code: CKVM_GET_XSAVE2, name: "KVM_GET_XSAVE2")
    static let setXSave = Self(code: CKVM_SET_XSAVE, name: "KVM_SET_XSAVE")
    static let getXCRs = Self(code: CKVM_GET_XCRS, name: "KVM_GET_XCRS")
    static let setXCRs = Self(code: CKVM_SET_XCRS, name: "KVM_SET_XCRS")
    static let getMSRs = Self(code: CKVM_GET_MSRS, name: "KVM_GET_MSRS")
    static let setMSRs = Self(code: CKVM_SET_MSRS, name: "KVM_SET_MSRS")
    static let getVCPUEvents = Self(code: CKVM_GET_VCPU_EVENTS, name: "KVM_GET_VCPU_EVENTS")
    static let setVCPUEvents = Self(code: CKVM_SET_VCPU_EVENTS, name: "KVM_SET_VCPU_EVENTS")
    static let getFPU = Self(code: CKVM_GET_FPU, name: "KVM_GET_FPU")
    static let setFPU = Self(code: CKVM_SET_FPU, name: "KVM_SET_FPU")
    static let getDebugRegisters = Self(code: CKVM_GET_DEBUGREGS, name: "KVM_GET_DEBUGREGS")
    static let setDebugRegisters = Self(code: CKVM_SET_DEBUGREGS, name: "KVM_SET_DEBUGREGS")
    static let setGuestDebug = Self(code: CKVM_SET_GUEST_DEBUG, name: "KVM_SET_GUEST_DEBUG")
}

/// The outcome of one ioctl: its non-negative result, or the `errno` it failed with.
///
/// `KVM_RUN` needs the raw form (EINTR is an answer there, not an error); everything else uses the
/// throwing wrappers.
enum IoctlResult {
    case success(Int32)
    case failure(errno: Int32)
}

/// Performs `request` on `fd` with an integer argument, once.
func rawIoctl(_ fd: Int32, _ request: KVMRequest, _ argument: UInt = 0) -> IoctlResult {
    let result = ckvm_ioctl_int(fd, request.code, argument)
    return result == -1 ? .failure(errno: errno) : .success(result)
}

/// Performs `request` on `fd` with a pointer argument, once.
func rawIoctl(_ fd: Int32, _ request: KVMRequest, _ argument: UnsafeMutableRawPointer) -> IoctlResult {
    // SAFETY: the caller passes a pointer to a live value of the type `request` was declared with (its
    // `_IOR`/`_IOW` size); the kernel reads or writes exactly that many bytes, or the header it describes.
    let result = unsafe ckvm_ioctl(fd, request.code, argument)
    return result == -1 ? .failure(errno: errno) : .success(result)
}

/// Performs `request` with an integer argument, retrying EINTR, and returns its result.
///
/// - Throws: ``KVMError/callFailed(call:errno:)`` naming the request.
func invoke(_ fd: Int32, _ request: KVMRequest, _ argument: UInt = 0) throws(KVMError) -> Int32 {
    while true {
        switch rawIoctl(fd, request, argument) {
        case .success(let value): return value
        case .failure(errno: EINTR): continue
        case .failure(let code): throw .callFailed(call: request.name, errno: code)
        }
    }
}

/// Performs `request` with a raw pointer argument, retrying EINTR, and returns its result.
///
/// Used where the argument is a variable-length buffer (`kvm_cpuid2` and its entries).
///
/// - Throws: ``KVMError/callFailed(call:errno:)`` naming the request.
@discardableResult
func invoke(_ fd: Int32, _ request: KVMRequest, pointer: UnsafeMutableRawPointer) throws(KVMError) -> Int32 {
    while true {
        switch unsafe rawIoctl(fd, request, pointer) {
        case .success(let result): return result
        case .failure(errno: EINTR): continue
        case .failure(let code): throw .callFailed(call: request.name, errno: code)
        }
    }
}

/// Performs `request` with a pointer to `value`, retrying EINTR, and returns its result.
///
/// - Throws: ``KVMError/callFailed(call:errno:)`` naming the request.
@discardableResult
func invoke<T>(_ fd: Int32, _ request: KVMRequest, _ value: inout T) throws(KVMError) -> Int32 {
    // SAFETY: `withUnsafeMutableBytes` yields a pointer to `value` that is valid for the duration of the
    // closure; the ioctl is synchronous and does not retain it. `T` is a kernel struct of the size the
    // request encodes, so the pointer is never empty.
    let outcome = unsafe withUnsafeMutableBytes(of: &value) { bytes in
        Result { () throws(KVMError) -> Int32 in unsafe try invoke(fd, request, pointer: bytes.baseAddress!) }
    }
    return try outcome.get()
}

/// Performs `request` with a pointer to the storage of `buffer` (a variable-length kernel structure laid
/// out in an array: `kvm_xsave`, `kvm_msrs`, `kvm_msr_list`), retrying EINTR, and returns its result.
///
/// - Throws: ``KVMError/callFailed(call:errno:)`` naming the request.
@discardableResult
func invoke<Element>(_ fd: Int32, _ request: KVMRequest, buffer: inout [Element]) throws(KVMError) -> Int32 {
    precondition(!buffer.isEmpty, "an ioctl buffer is never empty")
    // SAFETY: the array's storage stays valid and exclusively ours for the closure; the caller sized it
    // for everything the kernel reads or writes for `request`, and the ioctl is synchronous.
    let outcome = unsafe buffer.withUnsafeMutableBytes { bytes in
        Result { () throws(KVMError) -> Int32 in unsafe try invoke(fd, request, pointer: bytes.baseAddress!) }
    }
    return try outcome.get()
}
