@preconcurrency import Glibc

/// Why a guest file could not be read: one line for a person.
struct GuestFileError: Error, Equatable, CustomStringConvertible {
    let description: String
}

/// Reading guest files from disk, refusing what cannot be a guest before reading a byte of it.
enum GuestFile {
    /// The bytes of the regular file named `path` (bytes, passed to the kernel unchanged).
    ///
    /// The file is opened without blocking (a FIFO with no writer would otherwise hang in `open`) and must
    /// be a regular file: a FIFO, device or socket is refused before any read. `check` sees its size before
    /// a byte is read (and may refuse it), and no more than that size is read.
    /// - Throws: ``GuestFileError`` when it is missing, not a regular file, unreadable or empty, or what
    ///   `check` throws.
    static func read(path: [UInt8], check: (_ size: UInt64) throws(GuestFileError) -> Void) throws(GuestFileError)
        -> [UInt8]
    {
        let name = quoted(path)
        let fd = (path + [0]).withUnsafeBufferPointer { bytes in
            // SAFETY: the buffer is NUL-terminated and lives for the call.
            bytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                open($0, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
            }
        }
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw GuestFileError(description: "guest file \(name) does not exist") }
            throw GuestFileError(description: "cannot open guest file \(name): \(errnoText(code))")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw GuestFileError(description: "cannot read guest file \(name): \(errnoText(errno))")
        }
        switch status.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw GuestFileError(description: "guest file \(name) is a directory")
        case S_IFIFO: throw GuestFileError(description: "guest file \(name) is a FIFO, not a regular file")
        case S_IFCHR: throw GuestFileError(description: "guest file \(name) is a character device, not a regular file")
        case S_IFBLK: throw GuestFileError(description: "guest file \(name) is a block device, not a regular file")
        case S_IFSOCK: throw GuestFileError(description: "guest file \(name) is a socket, not a regular file")
        default: throw GuestFileError(description: "guest file \(name) is not a regular file")
        }
        let size = UInt64(status.st_size)
        guard size > 0 else { throw GuestFileError(description: "guest file \(name) is empty") }
        try check(size)
        let count = Int(size)
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = bytes.withUnsafeMutableBytes { buffer in
                // SAFETY: read writes at most `count - offset` bytes, which fit after `offset` in the buffer.
                Glibc.read(fd, buffer.baseAddress! + offset, count - offset)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw GuestFileError(description: "cannot read guest file \(name): \(errnoText(errno))")
            }
            if got == 0 {
                throw GuestFileError(description: "guest file \(name) shrank while it was read")
            }
            offset += got
        }
        return bytes
    }
}
