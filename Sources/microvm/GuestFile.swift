import Glibc

/// Why a guest file could not be read: one line for a person.
struct GuestFileError: Error, Equatable, CustomStringConvertible {
    let description: String
}

/// An open guest file: a regular, non-empty file, read by offset so that only the bytes asked for are read.
///
/// The file is opened without blocking (a FIFO with no writer would otherwise hang in `open`) and must be a
/// regular file: a FIFO, device or socket is refused before any read.
final class GuestFile {
    /// The name as given, quoted and escaped for messages.
    let name: String
    /// The size `fstat` reported when the file was opened.
    let size: UInt64
    private let fd: Int32

    /// Opens the regular file named `path` (bytes, passed to the kernel unchanged).
    /// - Throws: ``GuestFileError`` when it is missing, not a regular file, unreadable or empty.
    init(path: [UInt8]) throws(GuestFileError) {
        let name = quoted(path)
        let fd = unsafe (path + [0]).withUnsafeBufferPointer { bytes in
            // SAFETY: the buffer is NUL-terminated and lives for the call.
            unsafe bytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                unsafe open($0, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
            }
        }
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw GuestFileError(description: "guest file \(name) does not exist") }
            throw GuestFileError(description: "cannot open guest file \(name): \(errnoText(code))")
        }
        var status = stat()
        guard unsafe fstat(fd, &status) == 0 else {
            let code = errno
            close(fd)
            throw GuestFileError(description: "cannot read guest file \(name): \(errnoText(code))")
        }
        let kind: String? =
            switch status.st_mode & S_IFMT {
            case S_IFREG: nil
            case S_IFDIR: "is a directory"
            case S_IFIFO: "is a FIFO, not a regular file"
            case S_IFCHR: "is a character device, not a regular file"
            case S_IFBLK: "is a block device, not a regular file"
            case S_IFSOCK: "is a socket, not a regular file"
            default: "is not a regular file"
            }
        if let kind {
            close(fd)
            throw GuestFileError(description: "guest file \(name) \(kind)")
        }
        guard status.st_size > 0 else {
            close(fd)
            throw GuestFileError(description: "guest file \(name) is empty")
        }
        self.name = name
        self.fd = fd
        self.size = UInt64(status.st_size)
    }

    deinit { close(fd) }

    /// Up to `count` bytes at `offset`: fewer only where the file ends (it may have shrunk since it was
    /// opened). Never allocates more than the bytes between `offset` and ``size``.
    /// - Throws: ``GuestFileError`` for a read error.
    func read(at offset: UInt64, count: Int) throws(GuestFileError) -> [UInt8] {
        guard offset < size, count > 0 else { return [] }
        let wanted = Int(min(UInt64(count), size - offset))
        var bytes = [UInt8](repeating: 0, count: wanted)
        var done = 0
        while done < wanted {
            let got = unsafe bytes.withUnsafeMutableBytes { buffer in
                // SAFETY: pread writes at most `wanted - done` bytes, which fit after `done` in the buffer.
                unsafe pread(fd, buffer.baseAddress! + done, wanted - done, off_t(offset) + off_t(done))
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw GuestFileError(description: "cannot read guest file \(name): \(errnoText(errno))")
            }
            if got == 0 { break }
            done += got
        }
        return done == wanted ? bytes : Array(bytes[..<done])
    }

    /// The whole file, which must still be ``size`` bytes long.
    /// - Throws: ``GuestFileError`` for a read error or a file that shrank.
    func readAll() throws(GuestFileError) -> [UInt8] {
        let bytes = try read(at: 0, count: Int(size))
        guard bytes.count == Int(size) else {
            throw GuestFileError(description: "guest file \(name) shrank while it was read")
        }
        return bytes
    }
}
