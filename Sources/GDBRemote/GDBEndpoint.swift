/// An IPv4 address and TCP port the stub listens on, e.g. `127.0.0.1:1234`.
public struct GDBEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// The loopback address: the default, so a stub is reachable from this machine only.
    public static let loopback = "127.0.0.1"

    /// The IPv4 address in dotted-quad form; `0.0.0.0` listens on every interface.
    public var host: String
    /// The TCP port; 0 asks the system for a free one (see ``GDBServer/endpoint`` for the one chosen).
    public var port: UInt16

    /// An endpoint; loopback unless another address is given explicitly.
    public init(host: String = GDBEndpoint.loopback, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`, `:PORT` or `PORT` (the last two on loopback); `localhost` means `127.0.0.1`.
    /// Returns `nil` for a missing or out-of-range port. The host is checked when the server binds.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let hostPart = parts.count == 2 ? String(parts[0]) : ""
        let portPart = parts.count == 2 ? parts[1] : parts[0]
        guard !portPart.isEmpty, portPart.allSatisfy(\.isASCII), let port = UInt16(portPart) else { return nil }
        self.port = port
        self.host = hostPart.isEmpty || hostPart == "localhost" ? Self.loopback : hostPart
    }

    /// `HOST:PORT`.
    public var description: String { "\(host):\(port)" }
}

/// Why a ``GDBServer`` could not listen or accept.
public enum GDBServerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The host is not an IPv4 address in dotted-quad form.
    case invalidAddress(String)
    /// Another socket already listens on the endpoint (`EADDRINUSE`).
    case addressInUse(GDBEndpoint)
    /// No debugger connected within the timeout.
    case acceptTimedOut(GDBEndpoint)
    /// The server already accepted its one client.
    case alreadyAccepted
    /// A system call failed: its name and `errno`.
    case systemCall(String, errno: Int32)

    /// One line for a person, naming the endpoint and the reason.
    public var description: String {
        switch self {
        case .invalidAddress(let host): "cannot listen for gdb on '\(host)': not an IPv4 address"
        case .addressInUse(let endpoint): "cannot listen for gdb on \(endpoint): address already in use"
        case .acceptTimedOut(let endpoint): "no debugger connected to \(endpoint) in time"
        case .alreadyAccepted: "the gdb server accepts one debugger, and already has"
        case .systemCall(let call, let errno): "gdb server: \(call) failed: \(GDBSystemError.message(errno))"
        }
    }
}
