@preconcurrency import Glibc

/// Why a guest file could not be read: one line for a person.
public struct GuestFileError: Error, Equatable, CustomStringConvertible {
    public let description: String
}

/// Reading flat guest binaries from disk.
public enum GuestFile {
    /// Largest file read (guest RAM is at most 3 GiB).
    static let maximumSize = 3 << 30

    /// The bytes of the file at `path`.
    /// - Throws: ``GuestFileError`` when it is missing, a directory, unreadable, empty or too large.
    public static func read(path: String) throws(GuestFileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw GuestFileError(description: "guest file '\(path)' does not exist") }
            throw GuestFileError(description: "cannot open guest file '\(path)': \(errnoText(code))")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw GuestFileError(description: "cannot read guest file '\(path)': \(errnoText(errno))")
        }
        if status.st_mode & S_IFMT == S_IFDIR {
            throw GuestFileError(description: "guest file '\(path)' is a directory")
        }
        guard status.st_size <= maximumSize else {
            throw GuestFileError(description: "guest file '\(path)' is larger than any guest RAM (3 GiB)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                // SAFETY: read writes at most buffer.count bytes into the buffer it is given.
                Glibc.read(fd, buffer.baseAddress!, buffer.count)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw GuestFileError(description: "cannot read guest file '\(path)': \(errnoText(errno))")
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            guard bytes.count <= maximumSize else {
                throw GuestFileError(description: "guest file '\(path)' is larger than any guest RAM (3 GiB)")
            }
        }
        guard !bytes.isEmpty else { throw GuestFileError(description: "guest file '\(path)' is empty") }
        return bytes
    }
}
