internal import CMemory
import Glibc

/// The memory of a snapshot: bytes in a file that nobody writes any more (a sealed memfd, or the image
/// section of a snapshot file), which every machine restored from the snapshot maps privately.
///
/// A private mapping shares the file's pages until the guest (or the host) writes one, so N machines
/// restored from one image hold one copy of what none of them wrote. The image also keeps a read-only view
/// of itself, from which a reset copies back the pages a machine wrote.
///
/// `@safe`: it owns its mappings (unmapped once, in deinit) and hands out only bounds-checked copies.
@safe public final class SnapshotImage: Sendable {
    /// The file holding the image (owned: closed in deinit).
    let fd: Int32
    /// Where the image starts in the file; a multiple of 4 KiB.
    let offset: UInt64
    /// Bytes of memory the image holds; a multiple of 4 KiB.
    public let size: UInt64
    /// A read-only shared mapping of the image.
    nonisolated(unsafe) let view: UnsafeRawPointer

    /// Copies `memory` into a new sealed memfd. Pages that are not resident (never touched) or all zero are
    /// left as holes, which cost nothing until written.
    ///
    /// - Throws: ``SnapshotError/systemCallFailed(_:errno:)`` when the memfd cannot be made, filled or sealed.
    @_spi(Testing) public init(copying memory: GuestMemory) throws(SnapshotError) {
        let fd = unsafe cmemory_memfd_create("microvm-snapshot", CMEMORY_MFD_CLOEXEC | CMEMORY_MFD_ALLOW_SEALING)
        guard fd >= 0 else { throw .systemCallFailed("memfd_create", errno: errno) }
        do throws(SnapshotError) {
            guard ftruncate(fd, off_t(memory.size)) == 0 else { throw .systemCallFailed("ftruncate", errno: errno) }
            try memory.forEachPopulatedRun { address, count throws(SnapshotError) in
                try memory.writeRun(at: address, count: count, to: fd)
            }
            let seals =
                CMEMORY_F_SEAL_SHRINK | CMEMORY_F_SEAL_GROW | CMEMORY_F_SEAL_WRITE | CMEMORY_F_SEAL_SEAL
            guard fcntl(fd, CMEMORY_F_ADD_SEALS, seals) == 0 else {
                throw .systemCallFailed("fcntl(F_ADD_SEALS)", errno: errno)
            }
            unsafe self.view = unsafe try Self.mapView(fd: fd, offset: 0, size: memory.size)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        self.offset = 0
        self.size = memory.size
    }

    /// The image at `offset` in the file `fd` (which the image takes over), `size` bytes.
    init(adopting fd: Int32, offset: UInt64, size: UInt64) throws(SnapshotError) {
        precondition(offset & 0xFFF == 0 && size & 0xFFF == 0 && size > 0)
        do {
            unsafe self.view = unsafe try Self.mapView(fd: fd, offset: offset, size: size)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        self.offset = offset
        self.size = size
    }

    private static func mapView(fd: Int32, offset: UInt64, size: UInt64) throws(SnapshotError) -> UnsafeRawPointer {
        // SAFETY: a fresh read-only shared mapping of `size` bytes of the file at a page-aligned offset;
        // nothing writes through it, and it is unmapped exactly once, in deinit.
        let pointer = unsafe mmap(nil, Int(size), PROT_READ, MAP_SHARED, fd, off_t(offset))
        guard let pointer = unsafe pointer, unsafe pointer != MAP_FAILED else {
            throw .systemCallFailed("mmap(snapshot image)", errno: errno)
        }
        return UnsafeRawPointer(pointer)
    }

    deinit {
        // SAFETY: exactly the mapping made at init; no machine reads through it any more (each holds the
        // image while it lives).
        unsafe munmap(UnsafeMutableRawPointer(mutating: view), Int(size))
        close(fd)
    }

    /// Whether `[address, address + count)` lies inside the image.
    func contains(_ address: UInt64, count: UInt64) -> Bool {
        address <= size && count <= size &- address
    }

    /// Calls `body` with each range of the image that the file stores (page-aligned), in order: the rest are
    /// holes, which read as zeros. Where the file system cannot say, the whole image is one range.
    func forEachDataExtent<E: Error>(_ body: (Range<UInt64>) throws(E) -> Void) throws(E) {
        var position = offset
        let end = offset + size
        while position < end {
            let data = lseek(fd, off_t(position), CMEMORY_SEEK_DATA)
            if data < 0 {
                if errno == ENXIO { return }  // nothing but holes from here
                try body((position - offset)..<size)
                return
            }
            guard UInt64(data) < end else { return }
            let hole = lseek(fd, data, CMEMORY_SEEK_HOLE)
            let start = UInt64(data) & ~0xFFF
            let stop = min(hole < 0 ? end : (UInt64(hole) + 0xFFF) & ~0xFFF, end)
            try body((start - offset)..<(stop - offset))
            position = stop
        }
    }

    /// A copy of `[address, address + count)`, or `nil` outside the image.
    public func read(at address: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, contains(address, count: UInt64(count)) else { return nil }
        return unsafe withBytes(at: address, count: count) { unsafe Array($0) }
    }

    /// Calls `body` with the bytes of `[address, address + count)` (inside the image).
    func withBytes<R, E: Error>(at address: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) throws(E) -> R)
        throws(E)
        -> R
    {
        precondition(contains(address, count: UInt64(count)), "snapshot image read outside the image")
        // SAFETY: the range lies inside the read-only mapping (checked above), which lives as long as `self`.
        return unsafe try body(UnsafeRawBufferPointer(start: view + Int(address), count: count))
    }
}
