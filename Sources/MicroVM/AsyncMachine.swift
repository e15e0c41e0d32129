import Glibc
import KVMKit

/// A thread of its own for one machine, serving as the serial executor of an ``AsyncMachine``.
///
/// A vCPU belongs to the thread that made it (its kick signal is sent to that thread, and its signal mask
/// is that thread's), and a guest run blocks its thread for as long as the guest runs. So an `async`
/// machine gets a dedicated thread: everything it does runs there, one job after another, and no thread
/// of Swift's cooperative pool waits on a guest. The thread blocks every signal but the kick, so process
/// signals are delivered elsewhere; it ends when the executor is released.
///
/// `@safe`: its pthread objects are allocated once, never move, and are used only under their own lock.
@safe public final class MachineThread: SerialExecutor, @unchecked Sendable {
    // @unchecked: `jobs` and `stopping` are only touched with `lock` held; the pthread objects are heap
    // allocations that never move and are destroyed once the thread has ended. A pthread mutex and condition
    // rather than `Synchronization.Mutex` (the lock used everywhere else): the thread sleeps until a job
    // arrives, which needs a condition variable.
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [UnownedJob] = []
    private var stopping = false
    private var finished = false

    /// Starts the thread.
    public init() {
        // SAFETY: both were just allocated for this object; they are destroyed in deinit, after the thread
        // that uses them has signalled that it ended.
        unsafe pthread_mutex_init(lock, nil)
        unsafe pthread_cond_init(condition, nil)
        var thread = pthread_t()
        // The thread holds the executor until it ends (`stop()` is called by the owner's deinit).
        let context = unsafe Unmanaged.passRetained(self).toOpaque()
        let result = unsafe pthread_create(
            &thread, nil,
            { context in
                let executor = unsafe Unmanaged<MachineThread>.fromOpaque(context!).takeRetainedValue()
                executor.loop()
                return nil
            }, unsafe context)
        precondition(result == 0, "pthread_create failed: \(result)")
        pthread_detach(thread)
    }

    deinit {
        unsafe pthread_mutex_destroy(lock)
        unsafe pthread_cond_destroy(condition)
        unsafe lock.deallocate()
        unsafe condition.deallocate()
    }

    /// Queues `job` to run on the thread, after the jobs queued before it.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        unsafe pthread_mutex_lock(lock)
        jobs.append(job)
        unsafe pthread_cond_signal(condition)
        unsafe pthread_mutex_unlock(lock)
    }

    /// Lets the thread end once the jobs queued so far have run.
    public func stop() {
        unsafe pthread_mutex_lock(lock)
        stopping = true
        unsafe pthread_cond_signal(condition)
        unsafe pthread_mutex_unlock(lock)
    }

    /// Runs `body` on the thread and returns what it returns.
    public func perform<T, E: Error>(_ body: sending @escaping () throws(E) -> T) async throws(E) -> sending T {
        let result: HandOver<Result<T, E>> = await withCheckedContinuation { continuation in
            let job = Job(body: {
                continuation.resume(returning: HandOver(value: Result { () throws(E) in try body() }))
            })
            unsafe pthread_mutex_lock(lock)
            callbacks.append(job)
            unsafe pthread_cond_signal(condition)
            unsafe pthread_mutex_unlock(lock)
        }
        return try result.value.get()
    }

    /// A value made on the machine thread and handed, once, to the task that asked for it: nothing else
    /// holds it, so it crosses threads whole.
    private struct HandOver<Value>: @unchecked Sendable {
        let value: Value
    }

    /// A closure to run on the thread (``perform(_:)``), queued beside the executor's jobs.
    private struct Job: @unchecked Sendable {
        // @unchecked: the closure is handed from the queuing thread to the machine thread once and run there.
        let body: () -> Void
    }
    private var callbacks: [Job] = []

    private func loop() {
        var signals = sigset_t()
        unsafe sigfillset(&signals)
        unsafe sigdelset(&signals, KVMSystem.kickSignal)
        unsafe pthread_sigmask(SIG_BLOCK, &signals, nil)
        while true {
            unsafe pthread_mutex_lock(lock)
            while jobs.isEmpty && callbacks.isEmpty && !stopping { unsafe pthread_cond_wait(condition, lock) }
            if jobs.isEmpty && callbacks.isEmpty {
                unsafe pthread_mutex_unlock(lock)
                return
            }
            let nextJobs = jobs
            let nextCallbacks = callbacks
            jobs.removeAll()
            callbacks.removeAll()
            unsafe pthread_mutex_unlock(lock)
            for callback in nextCallbacks { callback.body() }
            for job in nextJobs { unsafe job.runSynchronously(on: asUnownedSerialExecutor()) }
        }
    }
}

/// A ``Machine`` for `async` code: built, run and called on a thread of its own (``MachineThread``), so
/// awaiting a guest never parks a thread of Swift's cooperative pool.
///
/// ```swift
/// let vm = try await AsyncMachine(configuration: configuration)
/// let outcome = try await vm.run()
/// ```
///
/// Every isolated method runs on the machine's thread; ``interrupt()`` may be called from anywhere.
public actor AsyncMachine {
    /// The machine's thread, which is this actor's executor.
    public nonisolated let thread: MachineThread
    /// The machine. Use it only from code isolated to this actor (``withMachine(_:)``), which runs on
    /// its thread.
    public let machine: Machine
    /// Stops a run in progress from any thread.
    public nonisolated let interrupter: Interrupter

    /// The machine's thread, as the actor's executor: every isolated method runs there.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { unsafe thread.asUnownedSerialExecutor() }

    /// Builds the machine on a new thread of its own.
    /// - Throws: ``MachineError`` as ``Machine/init(configuration:host:)`` does.
    public init(configuration: MachineConfiguration, host: KVMHost? = nil) async throws(MachineError) {
        let thread = MachineThread()
        let machine: Machine
        do {
            machine = try await thread.perform { () throws(MachineError) in
                try Machine(configuration: configuration, host: host)
            }
        } catch {
            thread.stop()
            throw error
        }
        self.thread = thread
        self.machine = machine
        self.interrupter = machine.interrupter
    }

    deinit { thread.stop() }

    /// Runs the guest (``Machine/run()``) on the machine's thread.
    public func run() throws(RunError) -> RunOutcome {
        try machine.run()
    }

    /// Calls the guest function `name` (``Machine/call(_:_:)-(String,CallValue...)``) on the machine's thread.
    public func call(_ name: String, _ arguments: CallValue...) throws(CallError) -> CallValue {
        try machine.call(try machine.function(name), arguments)
    }

    /// Resets the machine to its snapshot (``Machine/reset(allState:)``) on its thread.
    public func reset() throws(SnapshotError) {
        try machine.reset()
    }

    /// Snapshots the machine (``Machine/snapshot()``) on its thread.
    public func snapshot() throws(SnapshotError) -> Snapshot {
        try machine.snapshot()
    }

    /// Runs `body` with the machine, on its thread.
    public func withMachine<T: Sendable, E: Error>(_ body: (Machine) throws(E) -> T) throws(E) -> T {
        try body(machine)
    }

    /// Interrupts the current or next run (``Interrupter/interrupt()``).
    public nonisolated func interrupt() { interrupter.interrupt() }
}
