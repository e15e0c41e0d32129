internal import CKVM

extension VirtualMachine {
    /// Makes `KVM_GET_DIRTY_LOG` report without write-protecting the reported pages again; re-protecting
    /// becomes ``clearDirtyLog(slot:firstPage:pageCount:bitmap:)``'s job, for just the pages harvested.
    ///
    /// - Parameter initiallySet: start with every page of a logged slot reported dirty
    ///   (`KVM_DIRTY_LOG_INITIALLY_SET`): nothing is write-protected until first cleared.
    /// The corresponding KVM ioctl is `KVM_ENABLE_CAP` with `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_ENABLE_CAP`.
    public func enableManualDirtyLogProtection(initiallySet: Bool = false) throws(KVMError) {
        let bits = CKVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | (initiallySet ? 2 : 0)
        try enableCapability(.manualDirtyLogProtect2, arguments: [bits])
    }

    /// Copies slot `slot`'s dirty bitmap into `bitmap`: bit `n % 64` of word `n / 64` is page `n` of the
    /// slot, set if the guest wrote it since it was last cleared.
    ///
    /// Without manual protection the kernel also clears its log and write-protects the pages again; with
    /// it (``enableManualDirtyLogProtection(initiallySet:)``) the log stays until
    /// ``clearDirtyLog(slot:firstPage:pageCount:bitmap:)``. The slot must have been made with
    /// ``MemoryRegionFlags/logDirtyPages``, in a VM without a dirty ring. Allocates nothing. The
    /// corresponding KVM ioctl is `KVM_GET_DIRTY_LOG`.
    ///
    /// - Parameters:
    ///   - slot: a memory slot made through this object; traps otherwise.
    ///   - bitmap: at least one word per 64 pages of the slot; traps if shorter.
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_GET_DIRTY_LOG` (ENOENT for a slot
    ///   without dirty logging, ENXIO in a VM with a dirty ring).
    public func dirtyLog(slot: UInt32, into bitmap: inout [UInt64]) throws(KVMError) {
        guard let pages = slotPageCounts[slot] else { preconditionFailure("no memory slot \(slot)") }
        precondition(UInt64(bitmap.count) * 64 >= pages, "the dirty bitmap needs one word per 64 pages")
        let fd = fd
        // SAFETY: the kernel writes ceil(pages / 64) words, which the buffer holds (checked above); the
        // buffer stays valid for the closure, and the ioctl is synchronous.
        let outcome = unsafe bitmap.withUnsafeMutableBytes { buffer in
            Result { () throws(KVMError) in
                var log = unsafe kvm_dirty_log()
                unsafe log.slot = slot
                unsafe log.dirty_bitmap = buffer.baseAddress
                unsafe try invoke(fd, .getDirtyLog, &log)
            }
        }
        try outcome.get()
    }

    /// Clears the dirty bits set in `bitmap` for pages `firstPage ..< firstPage + pageCount` of slot `slot`
    /// and write-protects those pages again, so the guest's next write to them is logged.
    ///
    /// Bit `n` of `bitmap` (bit `n % 64` of word `n / 64`) stands for page `firstPage + n`. Needs
    /// ``enableManualDirtyLogProtection(initiallySet:)``. Allocates nothing. The corresponding KVM ioctl
    /// is `KVM_CLEAR_DIRTY_LOG`.
    ///
    /// - Parameters:
    ///   - slot: a memory slot with dirty logging.
    ///   - firstPage: a multiple of 64.
    ///   - pageCount: a multiple of 64, or reaching exactly the end of the slot.
    ///   - bitmap: at least one word per 64 pages of `pageCount`; traps if shorter.
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `KVM_CLEAR_DIRTY_LOG` (EINVAL for a misaligned
    ///   range or one past the slot's end).
    public func clearDirtyLog(slot: UInt32, firstPage: UInt64, pageCount: UInt32, bitmap: [UInt64]) throws(KVMError) {
        precondition(UInt64(bitmap.count) * 64 >= UInt64(pageCount), "the bitmap needs one word per 64 pages")
        let fd = fd
        // SAFETY: KVM_CLEAR_DIRTY_LOG only reads the bitmap (ceil(pageCount / 64) words, which the buffer
        // holds); the pointer is mutable only because the C field is; the ioctl is synchronous.
        let outcome = unsafe bitmap.withUnsafeBytes { buffer in
            Result { () throws(KVMError) in
                var log = unsafe kvm_clear_dirty_log()
                unsafe log.slot = slot
                unsafe log.first_page = firstPage
                unsafe log.num_pages = pageCount
                unsafe log.dirty_bitmap = unsafe UnsafeMutableRawPointer(mutating: buffer.baseAddress)
                unsafe try invoke(fd, .clearDirtyLog, &log)
            }
        }
        try outcome.get()
    }
}
