import Glibc

/// Tears machines down off the caller's critical path.
///
/// Closing a VM's file descriptor makes the kernel destroy the VM, which takes 0.3-1.2 ms on this machine
/// kind: longer than booting it. A machine that is done hands its KVM objects and guest memory to one
/// background thread, which releases them. At most ``limit`` machines wait; a caller that would exceed it
/// releases its own (so memory stays bounded when machines are made faster than they are destroyed).
///
/// `@safe`: its pthread objects are allocated once for the process-wide singleton and used only under its
/// lock.
@safe final class Reaper: @unchecked Sendable {
    // @unchecked: `pending` is only touched with `lock` held; the objects in it are no longer used by any
    // other thread (their machine is gone), and the reaper only releases them.
    static let shared = Reaper()
    static let limit = 64

    // A pthread mutex and condition, not `Synchronization.Mutex` (the lock used everywhere else), because the
    // reaper thread sleeps until there is work, which needs a condition variable. Heap-allocated: pthread
    // objects must not move, and a class's stored property has no such promise.
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var pending: [AnyObject] = []
    private var releasing = false
    private var started = false

    private init() {
        // SAFETY: both were just allocated for this singleton, which is never deallocated.
        unsafe pthread_mutex_init(lock, nil)
        unsafe pthread_cond_init(condition, nil)
    }

    /// Releases `objects` on the reaper thread. The caller hands over its last references (it moves them
    /// in), so the objects' deinits, and the system calls they make, run there.
    func retire(_ objects: consuming [AnyObject]) {
        unsafe pthread_mutex_lock(lock)
        if !started { started = startThread() }
        guard started, pending.count + objects.count <= Self.limit else {
            unsafe pthread_mutex_unlock(lock)
            return  // released here, by the caller dropping its references
        }
        pending.append(contentsOf: consume objects)
        unsafe pthread_cond_broadcast(condition)  // one condition serves the reaper and drain()'s waiters
        unsafe pthread_mutex_unlock(lock)
    }

    private func startThread() -> Bool {
        var thread = pthread_t()
        let context = unsafe Unmanaged.passUnretained(self).toOpaque()
        // SAFETY: `self` is the process-wide singleton and is never deallocated, so the unretained pointer
        // stays valid for the thread's whole life.
        let result = unsafe pthread_create(
            &thread, nil,
            { context in
                let reaper = unsafe Unmanaged<Reaper>.fromOpaque(context!).takeUnretainedValue()
                reaper.loop()
            }, unsafe context)
        if result == 0 { pthread_detach(thread) }
        return result == 0
    }

    private func loop() -> Never {
        // The reaper must not take kicks meant for vCPU threads.
        var signals = sigset_t()
        unsafe sigfillset(&signals)
        unsafe pthread_sigmask(SIG_BLOCK, &signals, nil)
        while true {
            unsafe pthread_mutex_lock(lock)
            while pending.isEmpty { unsafe pthread_cond_wait(condition, lock) }
            var batch: [AnyObject] = []
            swap(&batch, &pending)
            releasing = true
            unsafe pthread_mutex_unlock(lock)
            batch.removeAll()  // the last references: deinit closes fds and unmaps memory here
            unsafe pthread_mutex_lock(lock)
            releasing = false
            unsafe pthread_cond_broadcast(condition)
            unsafe pthread_mutex_unlock(lock)
        }
    }

    /// Blocks until every machine handed over so far has been released.
    func drain() {
        unsafe pthread_mutex_lock(lock)
        while !pending.isEmpty || releasing { unsafe pthread_cond_wait(condition, lock) }
        unsafe pthread_mutex_unlock(lock)
    }
}
