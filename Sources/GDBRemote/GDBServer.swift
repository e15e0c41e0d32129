import Glibc

/// A TCP listener for one gdb: binds at creation (so a port in use is reported at once), accepts a single
/// client, then closes the listening socket.
///
/// ```swift
/// let server = try GDBServer(endpoint: GDBEndpoint(port: 1234))   // 127.0.0.1:1234
/// let end = try server.serve(target)                                // blocks until detach, kill, ...
/// ```
public final class GDBServer {
    /// Where the server listens, with the port the system chose if 0 was asked for.
    public let endpoint: GDBEndpoint
    private var listener: Int32

    /// Binds and listens on `endpoint` (loopback port 0, a free port, by default).
    ///
    /// - Throws: ``GDBServerError/invalidAddress(_:)``, ``GDBServerError/addressInUse(_:)``, or
    ///   ``GDBServerError/systemCall(_:errno:)``. The corresponding system calls are `socket`, `bind`, `listen`.
    public init(endpoint: GDBEndpoint = GDBEndpoint(port: 0)) throws(GDBServerError) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = endpoint.port.bigEndian
        // SAFETY: inet_pton writes 4 bytes into `sin_addr`, an in_addr of exactly that size.
        guard unsafe inet_pton(AF_INET, endpoint.host, &address.sin_addr) == 1 else {
            throw .invalidAddress(endpoint.host)
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .systemCall("socket", errno: errno) }
        var one: Int32 = 1
        // Lets a restarted stub rebind a port still in TIME_WAIT; a live listener still gets EADDRINUSE.
        // SAFETY: setsockopt reads the Int32 `one`, of the size passed.
        _ = unsafe setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        // SAFETY: `address` is a live sockaddr_in; bind reads exactly its size through the rebound pointer.
        let bound = unsafe withUnsafePointer(to: &address) {
            unsafe $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                unsafe bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if bound != 0 {
            let error = errno
            close(fd)
            throw error == EADDRINUSE ? .addressInUse(endpoint) : .systemCall("bind", errno: error)
        }
        guard listen(fd, 1) == 0 else {
            let error = errno
            close(fd)
            throw .systemCall("listen", errno: error)
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        // SAFETY: `actual` is a live sockaddr_in of `length` bytes; getsockname writes at most that many.
        let named = unsafe withUnsafeMutablePointer(to: &actual) {
            unsafe $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { unsafe getsockname(fd, $0, &length) }
        }
        let port = named == 0 ? UInt16(bigEndian: actual.sin_port) : endpoint.port
        self.listener = fd
        self.endpoint = GDBEndpoint(host: endpoint.host, port: port)
    }

    deinit {
        if listener >= 0 { close(listener) }
    }

    /// Waits for gdb to connect and returns the connection; the listening socket is closed, so later
    /// connections are refused.
    ///
    /// - Parameter timeout: how long to wait, or `nil` to wait forever.
    /// - Throws: ``GDBServerError/acceptTimedOut(_:)``, ``GDBServerError/alreadyAccepted``, or
    ///   ``GDBServerError/systemCall(_:errno:)``. The corresponding system calls are `poll` and `accept`.
    public func accept(timeout: Duration? = nil) throws(GDBServerError) -> GDBConnection {
        guard listener >= 0 else { throw .alreadyAccepted }
        var waiting = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        while true {
            // SAFETY: poll reads and writes the one live pollfd `waiting`.
            let ready = unsafe poll(&waiting, 1, GDBSystemError.milliseconds(timeout))
            if ready > 0 { break }
            if ready == 0 { throw .acceptTimedOut(endpoint) }
            if errno != EINTR { throw .systemCall("poll", errno: errno) }
        }
        var client: Int32
        repeat {
            client = Glibc.accept(listener, nil, nil)
        } while client < 0 && errno == EINTR
        guard client >= 0 else { throw .systemCall("accept", errno: errno) }
        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
        close(listener)
        listener = -1
        do {
            return try GDBConnection(socket: client)
        } catch {
            throw .systemCall("pipe", errno: error.errno)
        }
    }

    /// Accepts one gdb and serves `target` to it until the session ends.
    ///
    /// - Parameters:
    ///   - target: what gdb debugs; called on this thread.
    ///   - configuration: the session's settings.
    ///   - acceptTimeout: how long to wait for gdb to connect, or `nil` to wait forever.
    /// - Returns: how the session ended.
    /// - Throws: the errors of ``accept(timeout:)``.
    public func serve(
        _ target: any GDBTarget, configuration: GDBSession.Configuration = GDBSession.Configuration(),
        acceptTimeout: Duration? = nil
    ) throws(GDBServerError) -> GDBSessionEnd {
        let connection = try accept(timeout: acceptTimeout)
        return GDBSession(target: target, configuration: configuration).serve(over: connection)
    }
}
