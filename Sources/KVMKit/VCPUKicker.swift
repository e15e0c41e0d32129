internal import CKVM
internal import Glibc
import Synchronization

/// Forces one vCPU out of `KVM_RUN` from any thread: the way a timeout or a second thread stops a guest.
///
/// Made on the vCPU's own thread by ``VCPU/makeKicker()``. A kick sets `kvm_run.immediate_exit` and sends
/// the kick signal (``KVMSystem/kickSignal``) to the vCPU's thread: if the vCPU is inside `KVM_RUN`, the signal interrupts it; if it is
/// about to enter, `immediate_exit` makes that entry return at once. Either way ``VCPU/run()`` returns
/// ``VCPUExit/interrupted``, and the caller should set ``VCPU/immediateExit`` back to `false` before
/// running again.
///
/// Threads that block the kick signal (Dispatch and Swift-concurrency workers do) are handled: every vCPU runs
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
    /// The signal a ``VCPUKicker`` or ``VCPUAlarm`` sends to stop a vCPU: by default the first real-time
    /// signal the C library leaves to applications (`SIGRTMIN`), as Firecracker does, so that no signal a
    /// program or a user commonly sends is taken. ``useKickSignal(_:)`` picks another before the first vCPU.
    /// KVMKit claims it: creating a vCPU installs a no-op handler for it.
    public static var kickSignal: Int32 { kickSignalState.withLock { $0.signal } }

    /// Chooses the kick signal. Call it before the first vCPU (or ``VCPUAlarm``) exists: the handler is
    /// installed once, for the signal chosen then.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `sigaction` with EBUSY once the handler is
    ///   installed (for another signal), EINVAL for a signal that cannot be caught.
    public static func useKickSignal(_ signal: Int32) throws(KVMError) {
        guard signal > 0, signal < 65, signal != SIGKILL, signal != SIGSTOP else {
            throw .callFailed(call: "sigaction", errno: EINVAL)
        }
        let accepted = kickSignalState.withLock { state in
            if state.installed { return state.signal == signal }
            state.signal = signal
            return true
        }
        guard accepted else { throw .callFailed(call: "sigaction", errno: EBUSY) }
    }

    /// Installs a no-op handler for ``kickSignal`` without `SA_RESTART`, so a kick interrupts `KVM_RUN`
    /// with EINTR instead of ending the process (the default action) or being restarted transparently.
    ///
    /// Idempotent and thread-safe; ``VirtualMachine/makeVCPU(id:)`` calls it, and nothing else in KVMKit
    /// touches process-wide signal state. The corresponding system call is `sigaction`.
    public static func installKickSignalHandler() {
        kickSignalState.withLock { state in
            guard !state.installed else { return }
            var action = sigaction()
            unsafe action.__sigaction_handler.sa_handler = { _ in }
            unsafe sigemptyset(&action.sa_mask)
            action.sa_flags = 0  // no SA_RESTART: the interrupted ioctl must fail with EINTR
            let result = unsafe sigaction(state.signal, &action, nil)
            precondition(result == 0, "sigaction(\(state.signal)) failed: \(KVMError.message(for: errno))")
            state.installed = true
        }
    }

    /// Dequeues every instance of the kick signal pending for the calling thread, without waiting.
    ///
    /// A thread that blocks the signal outside `KVM_RUN` keeps a kick that arrived there (or that
    /// interrupted the run) pending, and it would cut the next run on that thread short; real-time signals
    /// queue, so there may be several. The corresponding system call is `sigtimedwait` with a zero timeout.
    static func consumePendingKickSignal() {
        var set = sigset_t()
        unsafe sigemptyset(&set)
        unsafe sigaddset(&set, kickSignal)
        var noWait = timespec(tv_sec: 0, tv_nsec: 0)
        while unsafe sigtimedwait(&set, nil, &noWait) > 0 {}
    }

    /// The chosen signal, and whether its handler is installed.
    private static let kickSignalState = Mutex<(signal: Int32, installed: Bool)>((ckvm_sigrtmin(), false))
}
