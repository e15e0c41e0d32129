@preconcurrency import Glibc

/// Guest RAM: one anonymous `mmap` region that KVM registers as memory slot 0 at guest-physical 0.
///
/// Every host access goes through the bounds-checked accessors here; this file and `GuestTableOps` are the
/// only places in MicroVM that touch the raw mapping. Guest-physical address `a` is byte `a` of the region.
public final class GuestMemory {
    /// Size in bytes; a multiple of 4 KiB.
    public let size: UInt64
    /// Whether every page was faulted in when the memory was mapped.
    public let isPopulated: Bool
    /// Start of the host mapping. Only ``GuestMemory`` and ``GuestTableOps`` dereference it.
    @usableFromInline let base: UnsafeMutableRawPointer

    /// Maps `size` bytes of zeroed anonymous memory.
    ///
    /// - Parameter populate: fault every page in now (`MAP_POPULATE`), trading set-up time for no page
    ///   faults later; the page-table benchmarks measure both.
    /// - Throws: ``MachineError/memoryUnavailable(size:errno:)`` when `mmap` fails.
    public init(size: UInt64, populate: Bool = false) throws(MachineError) {
        precondition(size > 0 && size & 0xFFF == 0, "guest memory size must be a positive multiple of 4 KiB")
        var flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        if populate { flags |= MAP_POPULATE }
        // SAFETY: a fresh anonymous mapping aliases nothing; failure is reported as MAP_FAILED.
        let pointer = mmap(nil, Int(size), PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let pointer, pointer != MAP_FAILED else {
            throw .memoryUnavailable(size: size, errno: errno)
        }
        self.size = size
        self.base = pointer
        self.isPopulated = populate
    }

    /// Maps `size` bytes of the file at `path` shared (`MAP_SHARED`), creating or resizing it first: RAM that
    /// another process (the QEMU oracle) runs while this one edits its tables. The file starts zero-filled
    /// (any old contents are dropped).
    /// - Throws: ``MachineError/memoryUnavailable(size:errno:)`` when the file cannot be opened, sized or mapped.
    public init(sharedFile path: String, size: UInt64) throws(MachineError) {
        precondition(size > 0 && size & 0xFFF == 0, "guest memory size must be a positive multiple of 4 KiB")
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .memoryUnavailable(size: size, errno: errno) }
        defer { close(fd) }
        // Truncating to zero first drops old contents: the memory starts zero-filled, as fresh RAM does.
        guard ftruncate(fd, 0) == 0, ftruncate(fd, off_t(size)) == 0 else {
            throw .memoryUnavailable(size: size, errno: errno)
        }
        // SAFETY: a shared mapping of a file this process sized; it stays valid after the descriptor closes.
        let pointer = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let pointer, pointer != MAP_FAILED else { throw .memoryUnavailable(size: size, errno: errno) }
        self.size = size
        self.base = pointer
        self.isPopulated = false
    }

    deinit {
        // SAFETY: `base` and `size` are exactly what mmap returned and took; nothing uses them after deinit.
        munmap(base, Int(size))
    }

    /// The host address KVM needs for `KVM_SET_USER_MEMORY_REGION`.
    var hostAddress: UnsafeMutableRawPointer { base }

    /// Whether `[address, address + count)` lies inside guest RAM.
    @inlinable @inline(__always)
    public func contains(_ address: UInt64, count: UInt64) -> Bool {
        address <= size && count <= size &- address
    }

    /// Reads a little-endian integer at `address`, or `nil` if it is not wholly inside RAM.
    @inlinable
    public func load<T: FixedWidthInteger>(_: T.Type = T.self, at address: UInt64) -> T? {
        guard contains(address, count: UInt64(MemoryLayout<T>.size)) else { return nil }
        // SAFETY: the range is inside the mapping (checked above); loadUnaligned has no alignment needs.
        return T(littleEndian: base.loadUnaligned(fromByteOffset: Int(truncatingIfNeeded: address), as: T.self))
    }

    /// Writes a little-endian integer at `address`; returns false (writing nothing) outside RAM.
    @inlinable @discardableResult
    public func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) -> Bool {
        guard contains(address, count: UInt64(MemoryLayout<T>.size)) else { return false }
        // SAFETY: the range is inside the mapping (checked above); storeBytes has no alignment needs.
        base.storeBytes(of: value.littleEndian, toByteOffset: Int(truncatingIfNeeded: address), as: T.self)
        return true
    }

    /// Copies `count` bytes out of RAM, or `nil` if the range is not wholly inside it.
    public func read(at address: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, contains(address, count: UInt64(count)) else { return nil }
        // SAFETY: the source range is inside the mapping (checked above); the array has `count` bytes.
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 {
                buffer.baseAddress!.initialize(
                    from: (base + Int(address)).assumingMemoryBound(to: UInt8.self), count: count)
            }
            initialized = count
        }
    }

    /// Copies `bytes` into RAM at `address`; returns false (writing nothing) if they do not fit.
    @discardableResult
    public func write(_ bytes: some Collection<UInt8>, at address: UInt64) -> Bool {
        guard contains(address, count: UInt64(bytes.count)) else { return false }
        var offset = Int(address)
        for byte in bytes {
            // SAFETY: offset stays inside [address, address + count), which is inside the mapping.
            base.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
        return true
    }

    /// Copies `count` bytes inside RAM from `source` to `destination`; false if either range is outside.
    @discardableResult
    public func copy(from source: UInt64, to destination: UInt64, count: UInt64) -> Bool {
        guard contains(source, count: count), contains(destination, count: count) else { return false }
        // SAFETY: both ranges are inside the mapping (checked above); memmove allows overlap.
        memmove(base + Int(destination), base + Int(source), Int(count))
        return true
    }

    /// Sets `count` bytes at `address` to zero; false if the range is outside RAM.
    @discardableResult
    public func zero(at address: UInt64, count: UInt64) -> Bool {
        guard contains(address, count: count) else { return false }
        // SAFETY: the range is inside the mapping (checked above).
        memset(base + Int(address), 0, Int(count))
        return true
    }

    /// Asks the kernel to back the 2 MiB-aligned blocks inside `[address, address + count)` with transparent
    /// huge pages (`madvise(MADV_HUGEPAGE)`): one fault and one 2 MiB clear instead of 512 faults when a
    /// large page-table arena is first written. Does nothing outside RAM or where THP is off.
    public func adviseHugePages(at address: UInt64, count: UInt64) {
        let huge: UInt64 = 2 << 20
        let start = (address + huge - 1) & ~(huge - 1)
        guard contains(address, count: count), address + count >= start + huge else { return }
        let end = (address + count) & ~(huge - 1)
        // SAFETY: the range is inside the mapping (checked above); madvise only changes how it is backed.
        madvise(base + Int(start), Int(end - start), MADV_HUGEPAGE)
    }

    /// Faults in `[address, address + count)` for writing in one system call (`MADV_POPULATE_WRITE`), which
    /// is cheaper than taking one page fault per page as the range is first written. Best effort: returns
    /// false (and does nothing) outside RAM or on kernels before Linux 5.14.
    @discardableResult
    public func populate(at address: UInt64, count: UInt64) -> Bool {
        guard count > 0, address & 0xFFF == 0, contains(address, count: count) else { return false }
        // SAFETY: the range is inside the mapping (checked above); populating only allocates its pages.
        return madvise(base + Int(address), Int(count), 23 /* MADV_POPULATE_WRITE */) == 0
    }

    /// Reads `count` consecutive little-endian entries of `width` bytes (4 or 8) from `address`, passing each
    /// to `body` (zero-extended) until it returns false. One bounds check, then a plain loop: the read side of
    /// ``storeRun(at:count:width:first:step:)``, for the page-table engine's walks.
    @inlinable
    func loadRun(at address: UInt64, count: Int, width: Int, _ body: (UInt64) -> Bool) {
        precondition(
            count >= 0 && address & UInt64(width &- 1) == 0 && contains(address, count: UInt64(count &* width)),
            "page-table run outside guest memory")
        if width == 8 {
            // SAFETY: the run is inside the mapping and 8-byte aligned (checked above), and the mapping is
            // page-aligned, so every access is in bounds and aligned; see storeRun for the binding.
            let entries = UnsafePointer((base + Int(address)).assumingMemoryBound(to: UInt64.self))
            for i in 0..<count {
                guard body(UInt64(littleEndian: entries[i])) else { return }
            }
        } else {
            // SAFETY: as above, with 4-byte entries.
            let entries = UnsafePointer((base + Int(address)).assumingMemoryBound(to: UInt32.self))
            for i in 0..<count {
                guard body(UInt64(UInt32(littleEndian: entries[i]))) else { return }
            }
        }
    }

    /// Writes `count` consecutive entries of `width` bytes (4 or 8) at `address`: `first`, `first + step`, ...
    /// One bounds check, then a plain loop the compiler can vectorise: the page-table engine's hot path.
    @inlinable
    func storeRun(at address: UInt64, count: Int, width: Int, first: UInt64, step: UInt64) {
        precondition(
            count >= 0 && address & UInt64(width &- 1) == 0 && contains(address, count: UInt64(count &* width)),
            "page-table run outside guest memory")
        if width == 8 {
            // SAFETY: the run is inside the mapping and 8-byte aligned (checked above), and the mapping is
            // page-aligned, so every access is in bounds and aligned. The mapping is untyped memory from
            // mmap, as C buffers are: Swift code touches it only through this class, with trivial integer
            // types, and never holds a typed pointer across calls.
            let entries = (base + Int(address)).assumingMemoryBound(to: UInt64.self)
            var value = first
            for i in 0..<count {
                entries[i] = value
                value &+= step
            }
        } else {
            // SAFETY: as above, with 4-byte entries.
            let entries = (base + Int(address)).assumingMemoryBound(to: UInt32.self)
            var value = UInt32(truncatingIfNeeded: first)
            let step32 = UInt32(truncatingIfNeeded: step)
            for i in 0..<count {
                entries[i] = value
                value &+= step32
            }
        }
    }
}
