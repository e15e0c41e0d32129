import Glibc

/// One accepted TCP connection to gdb: the ``GDBTransport`` of a ``GDBServer``.
///
/// Blocking reads and writes on the session's thread, retried on `EINTR` (a vCPU thread receives kick
/// signals). While the target runs (``run(interrupting:_:)``), a watcher thread polls the socket together
/// with a private pipe: a byte `0x03` from gdb, or the socket closing, calls the interrupt handler; a byte
/// written to the pipe once the target has stopped ends the watcher, which is then joined. The session's
/// thread never reads the socket while the watcher does.
public final class GDBConnection: GDBTransport {
    private let socket: Int32
    private let stopReader: Int32
    private let stopWriter: Int32

    /// The most bytes kept from what arrives while the target runs (gdb sends nothing but `0x03` then);
    /// the excess is read and dropped, but still scanned for interrupts.
    static let runningInputLimit = 64 * 1024

    struct PipeError: Error {
        var errno: Int32
    }

    init(socket: Int32) throws(PipeError) {
        var ends: [Int32] = [-1, -1]
        // pipe2 and accept4 are GNU extensions Glibc's module does not export: set close-on-exec after.
        // SAFETY: pipe writes two Int32 descriptors into the two-element array's storage.
        guard unsafe pipe(&ends) == 0 else {
            let error = errno
            close(socket)
            throw PipeError(errno: error)
        }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        var one: Int32 = 1
        // Replies are small and latency-bound (one per step): do not wait to coalesce them.
        // SAFETY: setsockopt reads the Int32 `one`, of the size passed.
        _ = unsafe setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        self.socket = socket
        self.stopReader = ends[0]
        self.stopWriter = ends[1]
    }

    deinit {
        close(socket)
        close(stopReader)
        close(stopWriter)
    }

    /// Blocks for the next bytes. The corresponding system call is `recv`.
    public func receive(maximumCount: Int) throws(GDBTransportError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: max(1, maximumCount))
        while true {
            // SAFETY: recv writes at most buffer.count bytes into the array's own storage.
            let count = unsafe buffer.withUnsafeMutableBytes { unsafe recv(socket, $0.baseAddress, $0.count, 0) }
            if count >= 0 { return Array(buffer.prefix(count)) }
            switch errno {
            case EINTR, EAGAIN: continue
            case ECONNRESET, ENOTCONN, EPIPE: throw .disconnected
            case let error: throw .systemCall("recv", errno: error)
            }
        }
    }

    /// Sends every byte. The corresponding system call is `send` with `MSG_NOSIGNAL` (no `SIGPIPE`).
    public func send(_ bytes: [UInt8]) throws(GDBTransportError) {
        var offset = 0
        while offset < bytes.count {
            // SAFETY: send reads the bytes from `offset` to the array's end, inside its storage.
            let sent = unsafe bytes.withUnsafeBytes {
                unsafe Glibc.send(socket, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent > 0 {
                offset += sent
                continue
            }
            switch errno {
            case EINTR, EAGAIN: continue
            case ECONNRESET, EPIPE, ENOTCONN: throw .disconnected
            case let error: throw .systemCall("send", errno: error)
            }
        }
    }

    /// Runs `body` with a watcher thread listening for interrupts; see ``GDBTransport/run(interrupting:_:)``.
    /// The corresponding system calls are `pthread_create`, `poll`, `recv`, `write` and `pthread_join`.
    public func run(interrupting interrupt: @escaping @Sendable () -> Void, _ body: () -> Void)
        throws(GDBTransportError) -> [UInt8]
    {
        let watcher = Watcher(socket: socket, stop: stopReader, interrupt: interrupt)
        var thread = pthread_t()
        // SAFETY: one retain travels in `context`; exactly one side takes it back: the thread when it
        // starts, or the failure path below when it never does. The watcher lives until both are done.
        let context = unsafe Unmanaged.passRetained(watcher).toOpaque()
        // SAFETY: the start routine captures nothing, as a C function pointer must, and consumes `context`.
        let created = unsafe pthread_create(
            &thread, nil,
            { context in
                unsafe Unmanaged<Watcher>.fromOpaque(context!).takeRetainedValue().watch()
                return nil
            }, unsafe context)
        guard created == 0 else {
            // SAFETY: no thread started, so the retain in `context` is still ours to drop.
            unsafe Unmanaged<Watcher>.fromOpaque(context).release()
            throw .systemCall("pthread_create", errno: created)
        }
        body()
        var token: UInt8 = 1
        // SAFETY: write reads, and read writes, the one byte `token`.
        while unsafe write(stopWriter, &token, 1) < 0 && errno == EINTR {}
        pthread_join(thread, nil)
        // SAFETY: as above.
        while unsafe read(stopReader, &token, 1) < 0 && errno == EINTR {}
        // The join orders the watcher's writes before these reads.
        if watcher.closed { throw .disconnected }
        return watcher.received
    }
}

/// The watcher thread's state. `@unchecked Sendable`: the watcher thread alone writes `received` and
/// `closed` until it is joined; the session's thread reads them only after the join.
private final class Watcher: @unchecked Sendable {
    let socket: Int32
    let stop: Int32
    let interrupt: @Sendable () -> Void
    var received: [UInt8] = []
    var closed = false

    init(socket: Int32, stop: Int32, interrupt: @escaping @Sendable () -> Void) {
        self.socket = socket
        self.stop = stop
        self.interrupt = interrupt
    }

    /// Polls until the session writes to the stop pipe.
    func watch() {
        var fds = [
            pollfd(fd: stop, events: Int16(POLLIN), revents: 0),
            pollfd(fd: socket, events: Int16(POLLIN), revents: 0),
        ]
        var buffer = [UInt8](repeating: 0, count: 1024)
        while true {
            // Once the socket is closed only the stop pipe is watched (a closed socket polls readable forever).
            // SAFETY: poll reads and writes at most the array's two pollfd elements.
            let ready = unsafe poll(&fds, closed ? 1 : 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[0].revents != 0 { return }
            guard !closed, fds[1].revents != 0 else { continue }
            // SAFETY: recv writes at most buffer.count bytes into the array's own storage.
            let count = unsafe buffer.withUnsafeMutableBytes {
                unsafe recv(socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
            }
            if count > 0 {
                let bytes = buffer.prefix(count)
                if bytes.contains(GDBPacket.interruptByte) { interrupt() }
                received += bytes.prefix(max(0, GDBConnection.runningInputLimit - received.count))
            } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                closed = true
                interrupt()
            }
        }
    }
}
