internal import CKVM
internal import Glibc

/// Ends a run that goes on too long: a POSIX timer that kicks the vCPU from outside its thread.
///
/// The kernel's timer plays the other thread: on expiry it sends ``KVMSystem/kickSignal`` to the thread
/// that runs the vCPU (`SIGEV_THREAD_ID`), whose no-op handler makes `KVM_RUN` return EINTR
/// (``VCPUExit/interrupted``). The timer then re-fires every 10 ms (or every tick), so a signal that lands
/// just before the vCPU re-enters the guest is followed by another. No thread is started.
///
/// Create it on the vCPU's thread. One alarm serves any number of runs: ``arm(after:tick:)`` before a run
/// and ``cancel()`` after it cost one system call each; creating and deleting the timer is done once.
///
/// `@safe`: its only unsafe storage is the kernel timer handle, created in init and deleted once in deinit.
@safe public final class VCPUAlarm {
    /// The timeout of the current arming in seconds (infinity when it has only a tick).
    public private(set) var seconds: Double = .infinity
    var deadline = timespec(tv_sec: Int(Int32.max), tv_nsec: 0)
    /// The POSIX timer. `timer_t` is a pointer-sized id that glibc fills with the kernel's timer id, and
    /// the first timer of a process has id 0, which Swift imports as `nil`: so whether a timer exists is
    /// kept in `created`, never inferred from `timer`.
    var timer: timer_t? = nil
    var created = false
    /// Whether the timer is set to go off.
    public private(set) var armed = false
    /// When the current arming first goes off (`CLOCK_MONOTONIC`, the timer's clock).
    var firstExpiry = timespec(tv_sec: 0, tv_nsec: 0)

    /// Creates the timer for the calling thread, not armed.
    ///
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `timer_create`.
    public init() throws(KVMError) {
        KVMSystem.installKickSignalHandler()
        var event = unsafe sigevent()
        unsafe event.sigev_notify = Int32(SIGEV_THREAD_ID)
        unsafe event.sigev_signo = KVMSystem.kickSignal
        unsafe ckvm_sigevent_set_thread(&event, ckvm_gettid())
        var made: timer_t? = nil
        guard unsafe timer_create(CLOCK_MONOTONIC, &event, &made) == 0 else {
            throw .callFailed(call: "timer_create", errno: errno)
        }
        unsafe timer = unsafe made
        created = true
    }

    /// Creates the timer and arms it (``arm(after:tick:)``).
    public convenience init(after duration: Duration?, tick: Duration? = nil) throws(KVMError) {
        try self.init()
        try arm(after: duration, tick: tick)
    }

    /// Arms the alarm to go off `duration` from now (a negative duration: at once).
    ///
    /// - Parameters:
    ///   - duration: the deadline, from now; `nil` for none (then `tick` must be given).
    ///   - tick: kick the vCPU this often from the start, not only after the deadline, so the caller gets
    ///     control back regularly while the guest runs (to harvest a dirty ring before it fills, say);
    ///     ``expired`` still answers for the deadline only.
    /// - Throws: ``KVMError/callFailed(call:errno:)`` naming `timer_settime`: without a timer a guest that
    ///   never exits could run for ever, so the caller must not run it.
    public func arm(after duration: Duration?, tick: Duration? = nil) throws(KVMError) {
        precondition(duration != nil || tick != nil, "an alarm needs a deadline or a tick")
        func components(_ duration: Duration) -> (seconds: Int, nanoseconds: Int) {
            let (whole, attoseconds) = max(duration, .zero).components
            return (Int(min(whole, Int64(Int32.max))), Int(attoseconds / 1_000_000_000))
        }
        var now = timespec()
        unsafe clock_gettime(CLOCK_MONOTONIC, &now)
        func later(by duration: Duration) -> timespec {
            let (whole, nanoseconds) = components(duration)
            var end = timespec(tv_sec: now.tv_sec + whole, tv_nsec: now.tv_nsec + nanoseconds)
            if end.tv_nsec >= 1_000_000_000 {
                end.tv_sec += 1
                end.tv_nsec -= 1_000_000_000
            }
            return end
        }
        if let duration {
            let (whole, nanoseconds) = components(duration)
            seconds = Double(whole) + Double(nanoseconds) / 1e9
            deadline = later(by: duration)
        } else {
            seconds = .infinity
            deadline = timespec(tv_sec: Int(Int32.max), tv_nsec: 0)
        }
        let first = [duration, tick].compactMap { $0 }.min()!
        firstExpiry = later(by: first)
        let (firstSeconds, firstNanoseconds) = components(first)
        let (tickSeconds, tickNanoseconds) = components(tick ?? .milliseconds(10))
        var spec = itimerspec(
            it_interval: timespec(
                tv_sec: tickSeconds, tv_nsec: tickSeconds == 0 ? max(tickNanoseconds, 1) : tickNanoseconds),
            it_value: timespec(
                tv_sec: firstSeconds, tv_nsec: firstSeconds == 0 ? max(firstNanoseconds, 1) : firstNanoseconds))
        guard unsafe timer_settime(timer, 0, &spec, nil) == 0 else {
            throw .callFailed(call: "timer_settime", errno: errno)
        }
        armed = true
    }

    /// Whether the deadline has passed.
    public var expired: Bool {
        var now = timespec()
        unsafe clock_gettime(CLOCK_MONOTONIC, &now)
        return Self.reached(deadline, now: now)
    }

    static func reached(_ time: timespec, now: timespec) -> Bool {
        now.tv_sec > time.tv_sec || (now.tv_sec == time.tv_sec && now.tv_nsec >= time.tv_nsec)
    }

    /// Disarms the timer; idempotent. Call it on the vCPU's thread.
    ///
    /// Also dequeues expiries that may be pending on this thread (when the timer went off at all since it was
    /// armed): on a thread that blocks the kick signal outside `KVM_RUN` (every Dispatch or Swift-concurrency
    /// worker), they would otherwise cut the next run of any vCPU on this thread short with a spurious
    /// ``VCPUExit/interrupted``.
    public func cancel() {
        guard armed else { return }
        armed = false
        var stop = itimerspec()
        unsafe timer_settime(timer, 0, &stop, nil)
        // A timer that has not reached its first expiry by now (read after the disarm, on the timer's own
        // clock) never went off, so nothing of it can be pending: the dequeue, a system call, is skipped.
        // That is every short run, such as a reset cycle.
        var now = timespec()
        unsafe clock_gettime(CLOCK_MONOTONIC, &now)
        if Self.reached(firstExpiry, now: now) { KVMSystem.consumePendingKickSignal() }
    }

    deinit {
        cancel()
        if created { unsafe timer_delete(timer) }
    }
}
