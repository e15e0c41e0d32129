import Glibc

/// The socket layer's error text: the only place besides ``GDBServer`` and ``GDBConnection`` that calls libc.
enum GDBSystemError {
    /// `strerror(errno)`, e.g. "Address already in use".
    static func message(_ errno: Int32) -> String {
        // SAFETY: strerror returns a pointer to a NUL-terminated static or thread-local string, copied at once.
        unsafe "\(String(cString: strerror(errno))) (errno \(errno))"
    }

    /// Milliseconds for `poll`, or -1 (wait forever) for `nil`; clamped to `Int32.max`.
    static func milliseconds(_ timeout: Duration?) -> Int32 {
        guard let timeout else { return -1 }
        let (seconds, attoseconds) = timeout.components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        let milliseconds = seconds.multipliedReportingOverflow(by: 1000)
        guard !milliseconds.overflow else { return Int32.max }
        let total = milliseconds.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000_000_000)
        return total.overflow ? Int32.max : Int32(clamping: total.partialValue)
    }
}
