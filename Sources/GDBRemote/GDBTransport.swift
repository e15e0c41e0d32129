/// The byte stream between gdb and a ``GDBSession``: a TCP connection (``GDBConnection``) or, in tests, a
/// script.
///
/// The session calls every method on its own thread. Only ``run(interrupting:_:)`` involves a second
/// thread: while the target runs, something must keep listening for gdb's interrupt byte.
public protocol GDBTransport: AnyObject {
    /// Blocks until bytes arrive and returns up to `maximumCount` of them; returns an empty array when gdb
    /// closed the stream.
    func receive(maximumCount: Int) throws(GDBTransportError) -> [UInt8]

    /// Sends every byte, blocking as needed.
    func send(_ bytes: [UInt8]) throws(GDBTransportError)

    /// Runs `body` (a target's resume) on the calling thread while watching the stream: each interrupt
    /// byte (`0x03`) that arrives calls `interrupt`, as does the stream closing (so a guest running with
    /// nobody left to stop it is stopped). Returns every byte received meanwhile, interrupt bytes included,
    /// after `body` has returned and the watching has ended (no `interrupt` call happens after the return).
    ///
    /// - Throws: ``GDBTransportError/disconnected`` (after `body` returned) if gdb closed the stream.
    func run(interrupting interrupt: @escaping @Sendable () -> Void, _ body: () -> Void) throws(GDBTransportError)
        -> [UInt8]
}

/// Why the byte stream to gdb failed.
public enum GDBTransportError: Error, Hashable, Sendable, CustomStringConvertible {
    /// gdb closed the connection (or reset it).
    case disconnected
    /// A system call failed: its name and `errno`.
    case systemCall(String, errno: Int32)

    /// One line for a person.
    public var description: String {
        switch self {
        case .disconnected: "the debugger disconnected"
        case .systemCall(let call, let errno): "\(call) failed: \(GDBSystemError.message(errno))"
        }
    }
}
