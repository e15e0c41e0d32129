import Glibc
import MicroVM

// Standard output and standard error for the command line: every write goes through `writeAll`.

/// Why a write to a descriptor stopped.
enum WriteFailure: Error, CustomStringConvertible {
    /// The write failed with `errno`.
    case failed(errno: Int32)
    /// A signal interrupted a write that `giveUp` said to abandon.
    case interrupted

    var description: String {
        switch self {
        case .failed(let code): errnoText(code)
        case .interrupted: "interrupted"
        }
    }
}

/// Writes all of `bytes` to `fd`, retrying short writes; a write interrupted by a signal (EINTR) is
/// retried unless `giveUp()` says the run is over (its timeout passed, or a terminating signal came).
func writeAll(fd: Int32, _ bytes: [UInt8], giveUp: () -> Bool = { false }) throws(WriteFailure) {
    let failure: WriteFailure? = unsafe bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            // SAFETY: the pointer and length stay inside `buffer`.
            let written = unsafe write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 {
                let code = errno
                if code != EINTR { return .failed(errno: code) }
                if giveUp() { return .interrupted }
                continue
            }
            offset += written
        }
        return nil
    }
    if let failure { throw failure }
}

/// Writes `text` to standard error; nothing can be done when that fails.
func writeStandardError(_ text: String) {
    try? writeAll(fd: STDERR_FILENO, Array(text.utf8))
}

/// `strerror` text and the number: `No space left on device (errno 28)`.
func errnoText(_ code: Int32) -> String {
    guard let text = unsafe strerror(code) else { return "errno \(code)" }
    return unsafe String(cString: text) + " (errno \(code))"
}

/// Whether standard output was closed when the process started (see ``claimStandardDescriptors()``).
nonisolated(unsafe) var standardOutputWasClosed = false

/// Makes sure descriptors 0, 1 and 2 are open before anything else is opened, so that no file or device
/// (`/dev/kvm`, a guest file) lands on them and receives console bytes or error lines meant for a terminal.
/// A closed one is filled with `/dev/null`: read-only for standard output, so console writes fail (and the
/// run reports that its output is lost) instead of vanishing.
func claimStandardDescriptors() {
    for fd in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
        if fd == STDOUT_FILENO { unsafe standardOutputWasClosed = true }
        let placeholder = unsafe open("/dev/null", fd == STDERR_FILENO ? O_WRONLY : O_RDONLY)
        if placeholder >= 0 && placeholder != fd {
            dup2(placeholder, fd)
            close(placeholder)
        }
    }
}

/// A console sink writing to standard output. A write that cannot be completed ends the run with one line
/// (exit status 74); a write blocked on a full pipe gives up when the timeout passes or a terminating
/// signal arrives (the kick or the signal interrupts it).
func standardOutputSink(deadline: @escaping @Sendable () -> ContinuousClock.Instant?)
    -> @Sendable ([UInt8]) throws -> Void
{
    { bytes in
        do throws(WriteFailure) {
            try writeAll(fd: STDOUT_FILENO, bytes) {
                deadline().map { ContinuousClock.now >= $0 } == true || TerminationSignals.received != nil
            }
        } catch .failed(errno: EBADF) where unsafe standardOutputWasClosed {
            throw ConsoleWriteError(detail: "standard output is closed")
        } catch .failed(let code) {
            throw ConsoleWriteError(detail: "writing to standard output failed: \(errnoText(code))")
        } catch {
            throw ConsoleWriteError(detail: "writing to standard output was interrupted")
        }
    }
}

/// A console write that failed, described for the error line.
struct ConsoleWriteError: Error, CustomStringConvertible {
    let detail: String
    var description: String { detail }
}

/// `'name'` for an error line: bytes that are not printable UTF-8 (control characters, a newline, invalid
/// sequences) are written as `\n`, `\t` or `\xNN`, so the line stays one line and says exactly what was given.
func quoted(_ bytes: [UInt8]) -> String {
    var text = "'"
    var index = 0
    while index < bytes.count {
        let byte = bytes[index]
        switch byte {
        case 0x0A: text += "\\n"
        case 0x09: text += "\\t"
        case 0x0D: text += "\\r"
        case 0x5C: text += "\\\\"
        case 0x27: text += "\\'"
        case 0x20..<0x7F: text.unicodeScalars.append(Unicode.Scalar(byte))
        case 0x80...:
            // A whole, valid multi-byte UTF-8 sequence is kept as it is.
            let length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 0
            if length > 0, index + length <= bytes.count {
                let sequence = Array(bytes[index..<(index + length)])
                let decoded = String(validating: sequence, as: UTF8.self)
                if let decoded, decoded.unicodeScalars.count == 1,
                    decoded.unicodeScalars.allSatisfy({ !$0.properties.generalCategory.isControl })
                {
                    text += decoded
                    index += length
                    continue
                }
            }
            text += "\\x" + hexDigits(byte)
        default: text += "\\x" + hexDigits(byte)
        }
        index += 1
    }
    return text + "'"
}

/// ``quoted(_:)`` of a string's UTF-8.
func quoted(_ text: String) -> String { quoted(Array(text.utf8)) }

/// Two lowercase hex digits.
func hexDigits(_ byte: UInt8) -> String { (byte < 0x10 ? "0" : "") + String(byte, radix: 16) }

/// `0x` and lowercase hex without leading zeros, as the library's messages write addresses.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

extension Unicode.GeneralCategory {
    var isControl: Bool {
        switch self {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .unassigned, .privateUse: true
        default: false
        }
    }
}
