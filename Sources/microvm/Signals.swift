import Glibc
import MicroVM
import Synchronization

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT end the command cleanly: one line and exit status 128 + N.
///
/// The signals are blocked in every thread and taken by one thread waiting in `sigwait`, so nothing runs in
/// a signal handler and the Swift runtime's crash reporter (which claims SIGQUIT) never sees them. While a
/// guest runs, that thread interrupts the machine (``Interrupter/interrupt()``) and the run ends with the
/// guest's RIP on the error line; before the run starts, or after it ended, the process exits at once.
/// SIGPIPE is ignored, so a console write to a closed pipe fails with EPIPE and is reported like any other
/// write error; SIGUSR1 and SIGUSR2 are ignored too (main.swift).
enum TerminationSignals {
    static let signals = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    /// What the command is doing, as the waiting thread needs to know it.
    enum Phase {
        case starting
        case running(Interrupter)
        /// gdb drives the guest (`--gdb`): a signal ends the command at once.
        case debugging
        case finishing
    }

    static let state = Mutex<(phase: Phase, received: Int32?)>((.starting, nil))

    /// The first terminating signal received, if any.
    static var received: Int32? { state.withLock { $0.received } }

    /// Makes the signals the only ones blocked in the calling thread (threads started later inherit the
    /// mask) and starts the thread that waits for them. Call it first thing, before any other thread exists.
    ///
    /// The mask is set, not added to: a process inherits its parent's mask across `exec`, and a parent
    /// that spawns microvm from a Dispatch or Swift-concurrency worker thread (Foundation's `Process` in a
    /// test) passes on a mask that blocks the kick signal, which would keep the timeout's kick from
    /// interrupting a console write blocked on a full pipe.
    static func install() {
        signal(SIGPIPE, SIG_IGN)
        var set = signalSet()
        unsafe pthread_sigmask(SIG_SETMASK, &set, nil)
        var thread = pthread_t()
        let started = unsafe pthread_create(&thread, nil, { _ in TerminationSignals.wait() }, nil)
        if started == 0 { pthread_detach(thread) }
    }

    /// While the guest runs, a signal interrupts it instead of ending the process.
    static func running(_ interrupter: Interrupter) {
        state.withLock { state in
            state.phase = .running(interrupter)
            if state.received != nil { interrupter.interrupt() }
        }
    }

    /// gdb is about to be served: a signal from now on ends the process at once, with a line saying so.
    static func debugging() {
        state.withLock { $0.phase = .debugging }
    }

    /// The run is over: a signal from now on ends the process at once.
    static func finishing() {
        state.withLock { $0.phase = .finishing }
    }

    /// `SIGTERM`, or `signal N`.
    static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGHUP: "SIGHUP"
        case SIGQUIT: "SIGQUIT"
        default: "signal \(signal)"
        }
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        unsafe sigemptyset(&set)
        for signal in signals { unsafe sigaddset(&set, signal) }
        return set
    }

    private static func wait() -> Never {
        var set = signalSet()
        while true {
            var signal: Int32 = 0
            guard unsafe sigwait(&set, &signal) == 0 else { continue }
            // The status names the first signal, as the line does. A later one that arrives while the main
            // thread reports the first (the phase is then `.finishing`) gives that report a second to be
            // written before the process ends with the first signal's status; exiting at once could cut the
            // line, and a report stuck on a blocked stderr must not keep the process alive.
            enum Action { case none, exit(Int32), exitAfterGrace(Int32) }
            let action = state.withLock { state -> Action in
                let earlier = state.received
                let first = earlier ?? signal
                state.received = first
                switch state.phase {
                case .running(let interrupter):
                    interrupter.interrupt()
                    return .none
                case .starting:
                    writeStandardError("microvm: error: stopped by \(name(first)) before the guest ran\n")
                    return .exit(first)
                case .debugging:
                    writeStandardError("microvm: error: stopped by \(name(first)) while serving gdb\n")
                    return .exit(first)
                case .finishing:
                    return earlier == nil ? .exit(first) : .exitAfterGrace(first)
                }
            }
            switch action {
            case .none: continue
            case .exit(let first): _exit(128 + first)
            case .exitAfterGrace(let first):
                sleep(1)  // the main thread normally exits within microseconds, ending this thread with it
                _exit(128 + first)
            }
        }
    }
}
