internal import CKVM
internal import Glibc

/// One virtual CPU: its registers, its CPUID, and `KVM_RUN`.
///
/// Owns the vCPU file descriptor (closed in `deinit`) and a share of its `kvm_run` mapping. Confined to
/// one thread: create it, configure it and run it on the same thread, and stop it from elsewhere only
/// through a ``VCPUKicker``. Made by ``VirtualMachine/makeVCPU(id:)``.
public final class VCPU {
    /// The vCPU file descriptor.
    let fd: Int32
    /// The shared `kvm_run` mapping.
    let mapping: RunMapping
    /// The dirty ring, if the VM enabled one before this vCPU was made.
    let dirtyRing: DirtyRing?
    /// The XSAVE buffer size `KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2)` reported on the VM, 0 without XSAVE2.
    let xsave2Size: Int

    init(fd: Int32, mapping: RunMapping, dirtyRing: DirtyRing? = nil, xsave2Size: Int = 0) {
        self.fd = fd
        self.mapping = mapping
        self.dirtyRing = dirtyRing
        self.xsave2Size = xsave2Size
    }

    deinit {
        mapping.retire()
        close(fd)
    }

    // MARK: Registers

    /// The general-purpose registers, RIP and RFLAGS.
    ///
    /// The corresponding KVM ioctl is `KVM_GET_REGS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_REGS`.
    public func registers() throws(KVMError) -> Registers {
        var kernel = kvm_regs()
        try invoke(fd, .getRegisters, &kernel)
        return Registers(kernel)
    }

    /// Replaces the general-purpose registers, RIP and RFLAGS.
    ///
    /// The corresponding KVM ioctl is `KVM_SET_REGS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_REGS`.
    public func setRegisters(_ registers: Registers) throws(KVMError) {
        var kernel = registers.kernelValue
        try invoke(fd, .setRegisters, &kernel)
    }

    /// The segment, descriptor-table and control registers, EFER and the APIC base.
    ///
    /// The corresponding KVM ioctl is `KVM_GET_SREGS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_SREGS`.
    public func specialRegisters() throws(KVMError) -> SpecialRegisters {
        var kernel = kvm_sregs()
        try invoke(fd, .getSpecialRegisters, &kernel)
        return SpecialRegisters(kernel)
    }

    /// Replaces the special registers.
    ///
    /// Start from ``specialRegisters()`` and change what you need: the pending-interrupt bitmap read
    /// there is written back unchanged. KVM may silently drop bits the virtual CPU cannot honour (on
    /// `kvm_pvm`, CR0.PG without EFER.LME), so read them back when it matters. The corresponding KVM
    /// ioctl is `KVM_SET_SREGS`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_SREGS` (EINVAL for an inconsistent
    ///   state, such as EFER.LMA without CR0.PG).
    public func setSpecialRegisters(_ registers: SpecialRegisters) throws(KVMError) {
        var kernel = registers.kernelValue
        try invoke(fd, .setSpecialRegisters, &kernel)
    }

    /// Sets what the guest's `CPUID` instruction returns; usually ``KVMSystem/supportedCPUID()``.
    ///
    /// Must be called before the first ``run()``. The corresponding KVM ioctl is `KVM_SET_CPUID2`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_SET_CPUID2` (E2BIG for too many
    ///   entries).
    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        _ = unsafe try CPUIDEntry.withKernelBuffer(capacity: Swift.max(entries.count, 1), presenting: entries) {
            (header) throws(KVMError) in
            unsafe try invoke(fd, .setCPUID2, pointer: header)
        }
    }

    /// Translates a guest-virtual address with the vCPU's current paging state.
    ///
    /// The corresponding KVM ioctl is `KVM_TRANSLATE`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_TRANSLATE`.
    public func translate(_ virtualAddress: UInt64) throws(KVMError) -> Translation {
        var kernel = kvm_translation()
        kernel.linear_address = virtualAddress
        try invoke(fd, .translate, &kernel)
        return Translation(
            physicalAddress: kernel.physical_address, valid: kernel.valid != 0,
            writeable: kernel.writeable != 0, usermode: kernel.usermode != 0)
    }

    // MARK: Running

    /// Runs the guest until its next exit, once.
    ///
    /// EINTR is not retried: it means a kick (a ``VCPUKicker`` or ``VCPUAlarm``), another signal, or
    /// ``immediateExit`` stopped the vCPU, and is returned as ``VCPUExit/interrupted``; a kick signal left
    /// pending on this thread is consumed. After a kick, set ``immediateExit`` back to `false` before
    /// running again. The corresponding KVM ioctl is `KVM_RUN`.
    ///
    /// - Returns: why the guest stopped, with the exit's data copied out of `kvm_run`.
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_RUN` for any other failure.
    public func run() throws(KVMError) -> VCPUExit {
        switch rawIoctl(fd, .run) {
        case .success:
            // SAFETY: KVM_RUN returned, so the kernel has finished writing kvm_run for this exit; the
            // mapping is `mapping.size` bytes long and stays mapped while `self` exists.
            return unsafe VCPUExit(decoding: UnsafeRawPointer(mapping.run), mappingSize: mapping.size)
        case .failure(errno: EINTR):
            // On a thread that blocks the kick signal outside KVM_RUN, the signal that interrupted this
            // run is still pending; left there, it would cut the next run short.
            KVMSystem.consumePendingKickSignal()
            return .interrupted
        case .failure(let code):
            throw .callFailed(call: KVMRequest.run.name, errno: code)
        }
    }

    /// Answers the ``VCPUExit/ioIn(port:size:)`` exit just returned: the guest's `IN` reads `value`
    /// (truncated to the access size) when it next runs.
    ///
    /// Writes the data area of `kvm_run` that the exit described (`io.data_offset`). Calling it after any
    /// other exit is a programmer error and traps.
    public func completeIORead(_ value: UInt32) {
        let run = unsafe mapping.run
        // SAFETY: `run` points at the live kvm_run; only this (the vCPU's) thread writes it outside
        // KVM_RUN, and immediate_exit, the one field other threads touch, is not written here.
        let io = unsafe run.pointee.io
        unsafe precondition(
            run.pointee.exit_reason == UInt32(KVM_EXIT_IO) && io.direction == UInt8(KVM_EXIT_IO_IN)
                && io.count == 1,
            "completeIORead(_:) must answer an ioIn exit")
        let size = Int(io.size)
        let offset = Int(io.data_offset)
        precondition(size <= 4 && offset >= 0 && offset + size <= mapping.size, "IO data area outside kvm_run")
        var little = value.littleEndian
        // SAFETY: the destination lies inside the mapping (checked above); the source is `size` <= 4
        // bytes of a local UInt32.
        unsafe withUnsafeBytes(of: &little) { source in
            unsafe UnsafeMutableRawPointer(run).advanced(by: offset)
                .copyMemory(from: source.baseAddress!, byteCount: size)
        }
    }

    /// Answers the ``VCPUExit/ioInString(port:size:count:)`` exit just returned: the guest's `REP INS`
    /// stores `bytes` (exactly `count × size` of them) when it next runs.
    ///
    /// Writes the data area of `kvm_run` that the exit described (`io.data_offset`). Calling it after any
    /// other exit, or with the wrong number of bytes, is a programmer error and traps.
    public func completeIOReadString(_ bytes: [UInt8]) {
        let run = unsafe mapping.run
        // SAFETY: as in completeIORead(_:): the vCPU thread owns kvm_run between runs.
        let io = unsafe run.pointee.io
        unsafe precondition(
            run.pointee.exit_reason == UInt32(KVM_EXIT_IO) && io.direction == UInt8(KVM_EXIT_IO_IN) && io.count > 1,
            "completeIOReadString(_:) must answer an ioInString exit")
        let offset = Int(io.data_offset)
        precondition(bytes.count == Int(io.count) * Int(io.size), "completeIOReadString(_:) needs count x size bytes")
        precondition(offset >= 0 && offset + bytes.count <= mapping.size, "IO data area outside kvm_run")
        // SAFETY: the destination range lies inside the mapping (checked above).
        unsafe bytes.withUnsafeBytes { source in
            unsafe UnsafeMutableRawPointer(run).advanced(by: offset).copyMemory(
                from: source.baseAddress!, byteCount: source.count)
        }
    }

    /// Answers the MMIO read (``VCPUExit/mmio(address:size:writeValue:)`` with `writeValue == nil`) just
    /// returned: the guest's load reads `value` (truncated to the access size) when it next runs.
    ///
    /// Writes `kvm_run.mmio.data`. Calling it after any other exit is a programmer error and traps.
    public func completeMMIORead(_ value: UInt64) {
        let run = unsafe mapping.run
        // SAFETY: as in completeIORead(_:): the vCPU thread owns kvm_run between runs.
        var mmio = unsafe run.pointee.mmio
        unsafe precondition(
            run.pointee.exit_reason == UInt32(KVM_EXIT_MMIO) && mmio.is_write == 0,
            "completeMMIORead(_:) must answer an MMIO read exit")
        let size = Swift.min(Int(mmio.len), 8)
        var little = value.littleEndian
        // SAFETY: both buffers are 8-byte locals and at most 8 bytes are copied.
        unsafe withUnsafeMutableBytes(of: &mmio.data) { destination in
            unsafe withUnsafeBytes(of: &little) { source in
                unsafe destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[0..<size]))
            }
        }
        unsafe run.pointee.mmio = mmio
    }

    /// Whether the next `KVM_RUN` returns EINTR at once without entering the guest.
    ///
    /// A ``VCPUKicker`` sets it; clear it after the ``VCPUExit/interrupted`` exit it caused. Requires
    /// ``KVMCapability/immediateExit``. The kernel field is `kvm_run.immediate_exit`.
    public var immediateExit: Bool {
        // SAFETY: the mapping is live while `self` exists; the byte is accessed atomically because a
        // kicker may write it from another thread.
        get { unsafe ckvm_load_immediate_exit(mapping.run) != 0 }
        set { unsafe ckvm_store_immediate_exit(mapping.run, newValue ? 1 : 0) }
    }

    /// Makes a kicker that stops this vCPU from another thread. Call it on the thread that will call
    /// ``run()``: the kicker signals the calling thread.
    public func makeKicker() -> VCPUKicker {
        VCPUKicker(mapping: mapping, thread: pthread_self())
    }

    /// Makes `KVM_RUN` on this vCPU run with the calling thread's signal mask minus the kick signal, and
    /// installs the kick signal handler (``KVMSystem/installKickSignalHandler()``).
    ///
    /// Called once, at creation. This is what lets a kick (``VCPUKicker``, ``VCPUAlarm``) reach a thread
    /// that blocks the kick signal, as Dispatch and Swift-concurrency worker threads do (they block every
    /// asynchronous signal): the signal is unblocked only while the thread is inside `KVM_RUN`, and
    /// ``run()`` dequeues it afterwards. The handler must be in place first, or a stray kick signal arriving
    /// during `KVM_RUN` would take its default action and end the process.
    ///
    /// The corresponding KVM ioctl is `KVM_SET_SIGNAL_MASK`.
    func unblockKickSignalDuringRun() throws(KVMError) {
        KVMSystem.installKickSignalHandler()
        var mask = sigset_t()
        unsafe pthread_sigmask(SIG_BLOCK, nil, &mask)  // SIG_BLOCK with no set: only reads the current mask
        unsafe sigdelset(&mask, KVMSystem.kickSignal)
        // `struct kvm_signal_mask` is a 32-bit length followed by a flexible array holding the *kernel's*
        // sigset_t, which is 64 bits on x86-64 (glibc's sigset_t is 1024 bits; its first 64 have the same
        // layout: bit n-1 is signal n). The kernel rejects any other length with EINVAL.
        precondition(MemoryLayout<kvm_signal_mask>.size == 4)
        // SAFETY: reads the first 8 bytes of a local sigset_t, which is 128 bytes long.
        let bits = unsafe withUnsafeBytes(of: &mask) { unsafe $0.load(as: UInt64.self) }
        var argument: (length: UInt32, low: UInt32, high: UInt32) = (
            8, UInt32(truncatingIfNeeded: bits), UInt32(truncatingIfNeeded: bits >> 32)
        )
        try invoke(fd, .setSignalMask, &argument)
    }
}
