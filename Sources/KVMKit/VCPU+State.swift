internal import CKVM
internal import Glibc

// The vCPU state a snapshot saves beyond the general and special registers, and the host debugger's
// controls. Each method is one ioctl.

extension VCPU {
    /// Enables `capability` for this vCPU, with up to four capability-specific arguments.
    ///
    /// The corresponding KVM ioctl is `KVM_ENABLE_CAP` on the vCPU descriptor (``KVMCapability/enableCap``).
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_ENABLE_CAP`.
    public func enableCapability(_ capability: KVMCapability, flags: UInt32 = 0, arguments: [UInt64] = [])
        throws(KVMError)
    {
        try KVMKit.enableCapability(fd: fd, capability, flags: flags, arguments: arguments)
    }

    // MARK: Extended state

    /// The x87/SSE/AVX state in XSAVE format, 4096 bytes. Prefer ``xsave2()`` where
    /// ``KVMCapability/xsave2`` is reported: it also carries dynamically enabled components.
    ///
    /// The corresponding KVM ioctl is `KVM_GET_XSAVE` (``KVMCapability/xsave``).
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_XSAVE`.
    public func xsave() throws(KVMError) -> XSaveArea {
        try readXSave(.getXSave, size: XSaveArea.legacySize)
    }

    /// The x87/SSE/AVX state in XSAVE format, as many bytes as ``KVMCapability/xsave2`` reports for the VM
    /// (at least 4096).
    ///
    /// The corresponding KVM ioctl is `KVM_GET_XSAVE2`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_XSAVE2` (ENOTTY where the kernel
    ///   lacks it: use ``xsave()``).
    public func xsave2() throws(KVMError) -> XSaveArea {
        guard xsave2Size > 0 else { throw .callFailed(call: KVMRequest.getXSave2.name, errno: ENOTTY) }
        return try readXSave(.getXSave2, size: Swift.max(xsave2Size, XSaveArea.legacySize))
    }

    private func readXSave(_ request: KVMRequest, size: Int) throws(KVMError) -> XSaveArea {
        // The kernel writes at most `size` bytes: 4096 for KVM_GET_XSAVE, the KVM_CAP_XSAVE2 size for
        // KVM_GET_XSAVE2.
        var buffer = [UInt8](repeating: 0, count: size)
        try invoke(fd, request, buffer: &buffer)
        guard let area = XSaveArea(bytes: buffer) else { preconditionFailure("XSAVE buffer of \(size) bytes") }
        return area
    }

    /// Restores the XSAVE state (from ``xsave()`` or ``xsave2()``).
    ///
    /// The kernel reads as many bytes as ``KVMCapability/xsave2`` reports (4096 without it); a shorter area
    /// is padded with zeros. The corresponding KVM ioctl is `KVM_SET_XSAVE`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_XSAVE` (EINVAL for reserved bits
    ///   or components the vCPU's XCR0 does not allow).
    public func setXSave(_ area: XSaveArea) throws(KVMError) {
        var buffer = area.region
        let size = Swift.max(xsave2Size, XSaveArea.legacySize)
        if buffer.count < size { buffer += Array(repeating: 0, count: size - buffer.count) }
        try invoke(fd, .setXSave, buffer: &buffer)  // the kernel reads `size` bytes
    }

    /// The extended control registers (XCR0).
    ///
    /// The corresponding KVM ioctl is `KVM_GET_XCRS` (``KVMCapability/xcrs``).
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_XCRS`.
    public func extendedControlRegisters() throws(KVMError) -> ExtendedControlRegisters {
        var kernel = kvm_xcrs()
        try invoke(fd, .getXCRs, &kernel)
        return ExtendedControlRegisters(kernel)
    }

    /// Restores the extended control registers.
    ///
    /// The corresponding KVM ioctl is `KVM_SET_XCRS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_XCRS` (EINVAL for an XCR0 the
    ///   vCPU's CPUID does not allow).
    public func setExtendedControlRegisters(_ registers: ExtendedControlRegisters) throws(KVMError) {
        var kernel = registers.kernelValue
        try invoke(fd, .setXCRs, &kernel)
    }

    /// The x87 and SSE state in FXSAVE form, for kernels without XSAVE.
    ///
    /// The corresponding KVM ioctl is `KVM_GET_FPU`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_FPU`.
    public func fpu() throws(KVMError) -> FPUState {
        var kernel = kvm_fpu()
        try invoke(fd, .getFPU, &kernel)
        return FPUState(kernel)
    }

    /// Restores the x87 and SSE state.
    ///
    /// The corresponding KVM ioctl is `KVM_SET_FPU`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_FPU`.
    public func setFPU(_ state: FPUState) throws(KVMError) {
        var kernel = state.kernelValue
        try invoke(fd, .setFPU, &kernel)
    }

    // MARK: MSRs

    /// Reads the MSRs `indices`, in order, stopping at the first one the vCPU cannot read.
    ///
    /// The result holds the MSRs read, a prefix of `indices`: if it is shorter, `indices[result.count]`
    /// failed (skip it and read on to collect the rest). The corresponding KVM ioctl is `KVM_GET_MSRS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_MSRS` (E2BIG for more than the
    ///   kernel's limit of entries per call).
    public func modelSpecificRegisters(_ indices: [UInt32]) throws(KVMError) -> ModelSpecificRegisters {
        // The encoding of a list is a `struct kvm_msrs` with its entries: the kernel fills in their data.
        var buffer = ModelSpecificRegisters(indices.map { MSREntry(index: $0, value: 0) }).bytes
        let read = try invoke(fd, .getMSRs, buffer: &buffer)
        guard let all = ModelSpecificRegisters(bytes: buffer) else { preconditionFailure("kvm_msrs buffer") }
        return ModelSpecificRegisters(Array(all.entries.prefix(Int(read))))
    }

    /// Writes the MSRs of `registers`, in order, stopping at the first one the vCPU refuses; returns how
    /// many it wrote (if fewer than all, entry number `result` was refused).
    ///
    /// The corresponding KVM ioctl is `KVM_SET_MSRS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_MSRS`.
    @discardableResult
    public func setModelSpecificRegisters(_ registers: ModelSpecificRegisters) throws(KVMError) -> Int {
        var buffer = registers.bytes  // a `struct kvm_msrs` with its entries
        return Int(try invoke(fd, .setMSRs, buffer: &buffer))
    }

    // MARK: Events and debug registers

    /// The pending and in-flight exception, interrupt, NMI and SMI state.
    ///
    /// The corresponding KVM ioctl is `KVM_GET_VCPU_EVENTS` (``KVMCapability/vcpuEvents``).
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_VCPU_EVENTS`.
    public func events() throws(KVMError) -> VCPUEvents {
        var kernel = kvm_vcpu_events()
        try invoke(fd, .getVCPUEvents, &kernel)
        return VCPUEvents(kernel)
    }

    /// Restores the event state; only the groups named in ``VCPUEvents/valid`` of the optional ones are
    /// applied.
    ///
    /// The corresponding KVM ioctl is `KVM_SET_VCPU_EVENTS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_VCPU_EVENTS` (EINVAL for unknown
    ///   flags or an impossible combination).
    public func setEvents(_ events: VCPUEvents) throws(KVMError) {
        var kernel = events.kernelValue
        try invoke(fd, .setVCPUEvents, &kernel)
    }

    /// The guest's debug registers DR0-DR3, DR6, DR7.
    ///
    /// The corresponding KVM ioctl is `KVM_GET_DEBUGREGS` (``KVMCapability/debugRegs``).
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_DEBUGREGS`.
    public func debugRegisters() throws(KVMError) -> DebugRegisters {
        var kernel = kvm_debugregs()
        try invoke(fd, .getDebugRegisters, &kernel)
        return DebugRegisters(kernel)
    }

    /// Restores the guest's debug registers.
    ///
    /// The corresponding KVM ioctl is `KVM_SET_DEBUGREGS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_DEBUGREGS` (EINVAL for nonzero
    ///   flags or reserved bits set in the upper halves of DR6 / DR7).
    public func setDebugRegisters(_ registers: DebugRegisters) throws(KVMError) {
        var kernel = registers.kernelValue
        try invoke(fd, .setDebugRegisters, &kernel)
    }

    // MARK: Guest debugging

    /// Sets what stops the vCPU for the host debugger, or turns guest debugging off (`nil`).
    ///
    /// Stops arrive as ``VCPUExit/debug(_:)``. The corresponding KVM ioctl is `KVM_SET_GUEST_DEBUG`
    /// (``KVMCapability/setGuestDebug``).
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_GUEST_DEBUG`.
    public func setGuestDebug(_ debug: GuestDebug?) throws(KVMError) {
        var kernel = debug?.kernelValue ?? kvm_guest_debug()
        try invoke(fd, .setGuestDebug, &kernel)
    }
}
