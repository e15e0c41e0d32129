internal import Glibc

/// Why a KVM operation failed: which step, and the `errno` the kernel returned.
///
/// Every throwing KVMKit API throws exactly this type (`throws(KVMError)`), so callers can switch over the
/// cases exhaustively. The description is one line for a person, e.g.
/// `KVM_SET_SREGS failed: Invalid argument (errno 22)`.
public enum KVMError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `open(2)` of the KVM device failed (missing module, no permission, ...).
    case cannotOpen(path: String, errno: Int32)

    /// `KVM_GET_API_VERSION` returned a version this code was not written for (the stable API is 12).
    case unsupportedAPIVersion(got: Int, need: Int)

    /// A call failed with `errno`; `call` names the request as the kernel does (`"KVM_CREATE_VM"`) or the
    /// system call and its object (`"mmap(kvm_run)"`).
    case callFailed(call: String, errno: Int32)

    /// The `errno` carried by this error, if it has one.
    public var errno: Int32? {
        switch self {
        case .cannotOpen(_, let code), .callFailed(_, let code): code
        case .unsupportedAPIVersion: nil
        }
    }

    /// One line for a person: `KVM_SET_SREGS failed: Invalid argument (errno 22)`.
    public var description: String {
        switch self {
        case .cannotOpen(let path, let code):
            "cannot open \(path): \(Self.message(for: code)) (errno \(code))"
        case .unsupportedAPIVersion(let got, let need):
            "unsupported KVM API version \(got) (need \(need))"
        case .callFailed(let call, let code):
            "\(call) failed: \(Self.message(for: code)) (errno \(code))"
        }
    }

    /// The C library's text for `code` ("Invalid argument"), or "Unknown error N".
    static func message(for code: Int32) -> String {
        // SAFETY: `strerror` returns a pointer to a NUL-terminated string owned by the C library that stays
        // valid at least until the next `strerror` call on this thread; it is copied into a Swift String
        // immediately. glibc's `strerror` is thread-safe (unknown codes use a per-thread buffer).
        guard let text = unsafe strerror(code) else { return "Unknown error \(code)" }
        return unsafe String(cString: text)
    }
}
