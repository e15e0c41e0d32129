import Glibc

/// Guest RAM: one `mmap` region that KVM registers as memory slot 0 at guest-physical 0 — anonymous memory
/// for a fresh machine, a private mapping of a ``SnapshotImage`` for one restored from a snapshot.
///
/// Every host access goes through the bounds-checked accessors here; this file and `SnapshotImage` are the
/// only places in MicroVM that touch raw mappings. Guest-physical address `a` is byte `a` of the region.
/// When a machine can be reset, the memory also logs which pages the host wrote, since KVM's dirty tracking
/// sees only the guest's writes.
///
/// `@safe`: it owns the mapping (unmapped once, in deinit), and every access is checked against its size.
@safe public final class GuestMemory {
    /// Size in bytes; a multiple of 4 KiB.
    public let size: UInt64
    /// Whether every page was faulted in when the memory was mapped.
    public let isPopulated: Bool
    /// Start of the host mapping. Only ``GuestMemory`` dereferences it.
    @usableFromInline let base: UnsafeMutableRawPointer
    /// The image this memory is a private view of, if it is one.
    public private(set) var image: SnapshotImage?
    /// The pages the host has written since logging began, when it is on. Read on every store, so it opts
    /// out of dynamic exclusivity checks (a runtime call each): it is only set by ``startLoggingWrites()``,
    /// never while a store is under way.
    @exclusivity(unchecked) @usableFromInline var writeLog: HostWriteLog?

    /// Maps `size` bytes of zeroed anonymous memory.
    ///
    /// - Parameters:
    ///   - size: bytes of RAM, a multiple of 4 KiB.
    ///   - populate: fault every page in now (`MAP_POPULATE`), trading set-up time for no page faults
    ///     later.
    /// - Throws: ``MachineError/memoryUnavailable(size:errno:)`` when `mmap` fails.
    public init(size: UInt64, populate: Bool = false) throws(MachineError) {
        precondition(size > 0 && size & 0xFFF == 0, "guest memory size must be a positive multiple of 4 KiB")
        var flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        if populate { flags |= MAP_POPULATE }
        // SAFETY: a fresh anonymous mapping aliases nothing; failure is reported as MAP_FAILED.
        let pointer = unsafe mmap(nil, Int(size), PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let pointer = unsafe pointer, unsafe pointer != MAP_FAILED else {
            throw .memoryUnavailable(size: size, errno: errno)
        }
        self.size = size
        unsafe self.base = unsafe pointer
        self.isPopulated = populate
    }

    /// Maps `size` bytes of the file at `path` shared (`MAP_SHARED`), creating or resizing it first: RAM that
    /// another process (the QEMU oracle) runs while this one edits its tables. The file starts zero-filled
    /// (any old contents are dropped).
    /// - Throws: ``MachineError/memoryUnavailable(size:errno:)`` when the file cannot be opened, sized or mapped.
    public init(sharedFile path: String, size: UInt64) throws(MachineError) {
        precondition(size > 0 && size & 0xFFF == 0, "guest memory size must be a positive multiple of 4 KiB")
        let fd = unsafe open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .memoryUnavailable(size: size, errno: errno) }
        defer { close(fd) }
        // Truncating to zero first drops old contents: the memory starts zero-filled, as fresh RAM does.
        guard ftruncate(fd, 0) == 0, ftruncate(fd, off_t(size)) == 0 else {
            throw .memoryUnavailable(size: size, errno: errno)
        }
        // SAFETY: a shared mapping of a file this process sized; it stays valid after the descriptor closes.
        let pointer = unsafe mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let pointer = unsafe pointer, unsafe pointer != MAP_FAILED else {
            throw .memoryUnavailable(size: size, errno: errno)
        }
        self.size = size
        unsafe self.base = unsafe pointer
        self.isPopulated = false
    }

    /// Maps `image` privately: the guest sees the image's bytes, and what it (or the host) writes lands in
    /// private copies of the pages written, so other machines mapping the same image are not affected.
    /// - Throws: ``MachineError/memoryUnavailable(size:errno:)`` when the mapping fails.
    public init(privateViewOf image: SnapshotImage) throws(MachineError) {
        // SAFETY: a fresh private mapping of the image's file region; the file stays open while `image`
        // lives, which this memory holds.
        let pointer = unsafe mmap(
            nil, Int(image.size), PROT_READ | PROT_WRITE, MAP_PRIVATE, image.fd, off_t(image.offset))
        guard let pointer = unsafe pointer, unsafe pointer != MAP_FAILED else {
            throw .memoryUnavailable(size: image.size, errno: errno)
        }
        self.size = image.size
        unsafe self.base = unsafe pointer
        self.isPopulated = false
        self.image = image
    }

    deinit {
        // SAFETY: `base` and `size` are exactly what mmap returned and took; nothing uses them after deinit.
        unsafe munmap(base, Int(size))
    }

    /// Replaces the memory's contents with a private view of `image`, at the same host address (so a KVM
    /// memory slot over it stays valid and sees the new contents): every page written so far is dropped, in
    /// one system call. `image` must be exactly as large as the memory.
    /// - Throws: ``MachineError/memoryUnavailable(size:errno:)`` when the mapping fails (the old contents
    ///   are then gone too: the caller must not run the guest on it).
    func replaceContents(withPrivateViewOf image: SnapshotImage) throws(MachineError) {
        precondition(image.size == size, "the image must be as large as the memory")
        // SAFETY: MAP_FIXED over exactly this memory's own mapping, with the same size and protection; the
        // host address stays valid, and KVM's MMU notifier drops the guest's view of the old pages.
        let pointer = unsafe mmap(
            base, Int(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, image.fd, off_t(image.offset))
        guard let pointer = unsafe pointer, unsafe pointer != MAP_FAILED, unsafe pointer == base else {
            throw .memoryUnavailable(size: size, errno: errno)
        }
        self.image = image
    }

    /// The host address KVM needs for `KVM_SET_USER_MEMORY_REGION`.
    var hostAddress: UnsafeMutableRawPointer { unsafe base }

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
        return unsafe T(littleEndian: base.loadUnaligned(fromByteOffset: Int(truncatingIfNeeded: address), as: T.self))
    }

    /// Writes a little-endian integer at `address`; returns false (writing nothing) outside RAM.
    @inlinable @discardableResult
    public func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) -> Bool {
        guard contains(address, count: UInt64(MemoryLayout<T>.size)) else { return false }
        unsafe writeLog?.mark(address, count: UInt64(MemoryLayout<T>.size))
        // SAFETY: the range is inside the mapping (checked above); storeBytes has no alignment needs.
        unsafe base.storeBytes(of: value.littleEndian, toByteOffset: Int(truncatingIfNeeded: address), as: T.self)
        return true
    }

    /// Copies `count` bytes out of RAM, or `nil` if the range is not wholly inside it.
    public func read(at address: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, contains(address, count: UInt64(count)) else { return nil }
        // SAFETY: the source range is inside the mapping (checked above); the array has `count` bytes.
        return unsafe [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 {
                unsafe buffer.baseAddress!.initialize(
                    from: (base + Int(address)).assumingMemoryBound(to: UInt8.self), count: count)
            }
            initialized = count
        }
    }

    /// Copies `bytes` into RAM at `address`; returns false (writing nothing) if they do not fit.
    @discardableResult
    public func write(_ bytes: some Collection<UInt8>, at address: UInt64) -> Bool {
        guard contains(address, count: UInt64(bytes.count)) else { return false }
        unsafe writeLog?.mark(address, count: UInt64(bytes.count))
        var offset = Int(address)
        for byte in bytes {
            // SAFETY: offset stays inside [address, address + count), which is inside the mapping.
            unsafe base.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
        return true
    }

    /// Copies `count` bytes inside RAM from `source` to `destination`; false if either range is outside.
    @discardableResult
    public func copy(from source: UInt64, to destination: UInt64, count: UInt64) -> Bool {
        guard contains(source, count: count), contains(destination, count: count) else { return false }
        unsafe writeLog?.mark(destination, count: count)
        // SAFETY: both ranges are inside the mapping (checked above); memmove allows overlap.
        unsafe memmove(base + Int(destination), base + Int(source), Int(count))
        return true
    }

    /// Sets `count` bytes at `address` to zero; false if the range is outside RAM.
    @discardableResult
    public func zero(at address: UInt64, count: UInt64) -> Bool {
        guard contains(address, count: count) else { return false }
        unsafe writeLog?.mark(address, count: count)
        // SAFETY: the range is inside the mapping (checked above).
        unsafe memset(base + Int(address), 0, Int(count))
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
        unsafe madvise(base + Int(start), Int(end - start), MADV_HUGEPAGE)
    }

    /// Faults in `[address, address + count)` for writing in one system call (`MADV_POPULATE_WRITE`), which
    /// is cheaper than taking one page fault per page as the range is first written. Best effort: returns
    /// false (and does nothing) outside RAM or on kernels before Linux 5.14.
    @discardableResult
    public func populate(at address: UInt64, count: UInt64) -> Bool {
        guard count > 0, address & 0xFFF == 0, contains(address, count: count) else { return false }
        // SAFETY: the range is inside the mapping (checked above); populating only allocates its pages.
        return unsafe madvise(base + Int(address), Int(count), 23 /* MADV_POPULATE_WRITE */) == 0
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
            let entries = unsafe UnsafePointer((base + Int(address)).assumingMemoryBound(to: UInt64.self))
            for i in 0..<count {
                guard unsafe body(UInt64(littleEndian: entries[i])) else { return }
            }
        } else {
            // SAFETY: as above, with 4-byte entries.
            let entries = unsafe UnsafePointer((base + Int(address)).assumingMemoryBound(to: UInt32.self))
            for i in 0..<count {
                guard unsafe body(UInt64(UInt32(littleEndian: entries[i]))) else { return }
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
        unsafe writeLog?.mark(address, count: UInt64(count &* width))
        if width == 8 {
            // SAFETY: the run is inside the mapping and 8-byte aligned (checked above), and the mapping is
            // page-aligned, so every access is in bounds and aligned. The mapping is untyped memory from
            // mmap, as C buffers are: Swift code touches it only through this class, with trivial integer
            // types, and never holds a typed pointer across calls.
            let entries = unsafe (base + Int(address)).assumingMemoryBound(to: UInt64.self)
            var value = first
            for i in 0..<count {
                unsafe entries[i] = value
                value &+= step
            }
        } else {
            // SAFETY: as above, with 4-byte entries.
            let entries = unsafe (base + Int(address)).assumingMemoryBound(to: UInt32.self)
            var value = UInt32(truncatingIfNeeded: first)
            let step32 = UInt32(truncatingIfNeeded: step)
            for i in 0..<count {
                unsafe entries[i] = value
                value &+= step32
            }
        }
    }

    // MARK: Snapshots

    /// Calls `body` with each run of pages that may hold something other than zeros: resident pages (a
    /// page never touched reads as zeros) that are not all zero. Reading costs one `mincore` call and a scan
    /// of the resident pages.
    func forEachPopulatedRun<E: Error>(_ body: (_ address: UInt64, _ count: UInt64) throws(E) -> Void) throws(E) {
        let pages = Int(size >> 12)
        var resident = [UInt8](repeating: 1, count: pages)
        // SAFETY: `resident` has one byte per page of the mapping, which is what mincore writes.
        let known =
            unsafe resident.withUnsafeMutableBufferPointer { unsafe mincore(base, Int(size), $0.baseAddress!) } == 0
        var runStart: Int? = nil
        for page in 0...pages {
            let populated = page < pages && (!known || resident[page] & 1 != 0) && !isZeroPage(page)
            if populated, runStart == nil { runStart = page }
            if !populated, let start = runStart {
                try body(UInt64(start) << 12, UInt64(page - start) << 12)
                runStart = nil
            }
        }
    }

    /// Whether page `page` holds only zeros.
    func isZeroPage(_ page: Int) -> Bool {
        // SAFETY: the page lies inside the mapping (callers pass page numbers below size / 4096); it is read
        // as 512 aligned 8-byte words.
        let words = unsafe (base + (page << 12)).assumingMemoryBound(to: UInt64.self)
        var any: UInt64 = 0
        for index in 0..<512 { unsafe any |= words[index] }
        return any == 0
    }

    /// Writes `[address, address + count)` to the same offsets of the file `fd`.
    func writeRun(at address: UInt64, count: UInt64, to fd: Int32, fileOffset: UInt64 = 0) throws(SnapshotError) {
        precondition(contains(address, count: count))
        var done: UInt64 = 0
        while done < count {
            // SAFETY: the source range lies inside the mapping (checked above).
            let written = unsafe pwrite(
                fd, base + Int(address + done), Int(count - done), off_t(fileOffset + address + done))
            if written < 0 {
                if errno == EINTR { continue }
                throw .systemCallFailed("write(snapshot image)", errno: errno)
            }
            done += UInt64(written)
        }
    }

    /// Copies page `page` back from `image` (the memory's size and layout).
    @inline(__always)
    func restorePage(_ page: UInt32, from image: SnapshotImage) {
        let offset = Int(page) << 12
        precondition(UInt64(offset) + 4096 <= size && UInt64(offset) + 4096 <= image.size, "page outside memory")
        // SAFETY: both 4 KiB ranges lie inside their mappings (checked above); they are distinct mappings.
        unsafe memcpy(base + offset, image.view + offset, 4096)
    }

    /// Copies page `page` of `other` into page `toPage` of this memory (both inside their memories).
    func copy(from other: GuestMemory, page: Int, toPage: Int) {
        precondition(UInt64(page + 1) << 12 <= other.size && UInt64(toPage + 1) << 12 <= size, "page outside memory")
        unsafe writeLog?.mark(UInt64(toPage) << 12, count: 4096)
        // SAFETY: both 4 KiB ranges lie inside their mappings (checked above).
        unsafe memcpy(base + (toPage << 12), other.base + (page << 12), 4096)
    }

    /// Starts logging the pages the host writes (or clears the log).
    func startLoggingWrites() {
        if let writeLog = unsafe writeLog {
            writeLog.clear()
        } else {
            unsafe writeLog = HostWriteLog(pages: Int(size >> 12))
        }
    }
}

/// The pages of guest memory the host wrote since a point: a bitmap that removes duplicates and a list that
/// says which bits to visit, so reading and clearing it costs what was written, not the size of RAM.
///
/// Its fields opt out of dynamic exclusivity checks: each access is one short read or write from the thread
/// that owns the machine, never held across a call.
@usableFromInline final class HostWriteLog {
    @exclusivity(unchecked) @usableFromInline var bits: [UInt64]
    @exclusivity(unchecked) @usableFromInline var pages: [UInt32] = []

    init(pages: Int) { unsafe bits = [UInt64](repeating: 0, count: (pages + 63) / 64) }

    /// Marks the pages `[address, address + count)` touches (the range is inside memory).
    @inlinable @inline(__always)
    func mark(_ address: UInt64, count: UInt64) {
        guard count > 0 else { return }
        var page = address >> 12
        let last = (address &+ count &- 1) >> 12
        while page <= last {
            let word = Int(page >> 6)
            let bit: UInt64 = 1 << (page & 63)
            if unsafe bits[word] & bit == 0 {
                unsafe bits[word] |= bit
                unsafe pages.append(UInt32(truncatingIfNeeded: page))
            }
            page &+= 1
        }
    }

    /// Forgets every page.
    func clear() {
        for page in unsafe pages { unsafe bits[Int(page >> 6)] = 0 }
        unsafe pages.removeAll(keepingCapacity: true)
    }
}
