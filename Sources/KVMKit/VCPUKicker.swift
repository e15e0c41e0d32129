@preconcurrency internal import Glibc

/// Forces one vCPU out of `KVM_RUN` from any thread: the way a timeout or a second thread stops a guest.
///
/// Made on the vCPU's own thread by ``VCPU/makeKicker()``. A kick sets `kvm_run.immediate_exit` and sends
/// `SIGUSR1` to the vCPU's thread: if the vCPU is inside `KVM_RUN`, the signal interrupts it; if it is
/// about to enter, `immediate_exit` makes that entry return at once. Either way ``VCPU/run()`` returns
/// ``VCPUExit/interrupted``, and the caller should set ``VCPU/immediateExit`` back to `false` before
/// running again.
///
/// Threads that block `SIGUSR1` (Dispatch and Swift-concurrency workers do) are handled: every vCPU runs
/// with the signal unblocked for the duration of `KVM_RUN` only (see ``VirtualMachine/makeVCPU(id:)``),
/// and ``VCPU/run()`` consumes a kick left pending. On a thread that does not block it, a kick arriving
/// outside `KVM_RUN` runs the no-op handler and can make a blocking system call of that thread return
/// EINTR.
///
/// Contract: the vCPU's thread must outlive the kicker's use, or the ``VCPU`` must have been released
/// (kicks after that do nothing).
public struct VCPUKicker: Sendable {
    let mapping: RunMapping
    let thread: pthread_t

    /// Interrupts the vCPU's current or next `KVM_RUN`. Safe to call from any thread, any number of times.
    public func kick() {
        mapping.kick(thread: thread, signal: KVMSystem.kickSignal)
    }
}

extension KVMSystem {
    /// The signal a ``VCPUKicker`` or ``VCPUAlarm`` sends to stop a vCPU: `SIGUSR1`. KVMKit claims it:
    /// creating a vCPU installs a no-op handler for it.
    public static var kickSignal: Int32 { SIGUSR1 }

    /// Installs a no-op `SIGUSR1` handler without `SA_RESTART`, so a kick interrupts `KVM_RUN` with EINTR
    /// instead of killing the process (the default action) or being restarted transparently.
    ///
    /// Idempotent and thread-safe; ``VirtualMachine/makeVCPU(id:)`` calls it. The corresponding system call
    /// is `sigaction`.
    public static func installKickSignalHandler() {
        _ = kickHandlerInstalled
    }

    /// Dequeues the kick signal if it is pending for the calling thread, without waiting.
    ///
    /// A thread that blocks the signal outside `KVM_RUN` keeps a kick that arrived there (or that
    /// interrupted the run) pending, and it would cut the next run on that thread short. The corresponding
    /// system call is `sigtimedwait` with a zero timeout.
    static func consumePendingKickSignal() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, kickSignal)
        var noWait = timespec(tv_sec: 0, tv_nsec: 0)
        _ = sigtimedwait(&set, nil, &noWait)
    }

    /// Installs the handler once: a lazily initialised global is initialised exactly once, thread-safely.
    private static let kickHandlerInstalled: Void = {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: the interrupted ioctl must fail with EINTR
        let result = sigaction(SIGUSR1, &action, nil)
        precondition(result == 0, "sigaction(SIGUSR1) failed: \(KVMError.message(for: errno))")
    }()
}
