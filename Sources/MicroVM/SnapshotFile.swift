import Glibc
import KVMKit
public import PageTables

// Snapshot files (docs/snapshot-format.md): a 4 KiB header, the state section, then the memory image at a
// page-aligned offset, so a restore maps it instead of reading it. Everything a file says is checked before
// anything is built from it: a file is refused whole, with one line, or loaded whole.

/// The snapshot file format's constants.
enum SnapshotFormat {
    static let magic: [UInt8] = Array("MVMSNAP".utf8) + [0]
    static let version: UInt32 = 1
    static let headerSize = 4096
    /// The header fields end here; the rest of the first page is zero.
    static let headerFieldsSize = 72
    /// The state section may not be larger than this (an XSAVE area is at most a few KiB).
    static let maximumStateSize = 1 << 20

    /// State record tags.
    enum Tag: UInt32, CaseIterable {
        case configuration = 1, registers, specialRegisters, xsave, extendedControlRegisters, msrs, events,
            debugRegisters, roots, arena, leafSizes, calls
    }
}

/// A 64-bit checksum over words, fast enough to verify a memory image at load (several GB/s): four lanes
/// mixed with multiply and rotate, folded at the end. It finds corruption; it is not cryptographic.
struct Checksum {
    private var lanes: (UInt64, UInt64, UInt64, UInt64) = (
        0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F, 0x1656_67B1_9E37_79F9, 0x85EB_CA77_C2B2_AE63
    )
    private var length: UInt64 = 0

    @inline(__always) private static func round(_ lane: UInt64, _ word: UInt64) -> UInt64 {
        let mixed = lane &+ word &* 0xC2B2_AE3D_27D4_EB4F
        return ((mixed << 31) | (mixed >> 33)) &* 0x9E37_79B9_7F4A_7C15
    }

    /// Adds `bytes` (any length; a tail shorter than 32 bytes is padded with zeros).
    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        length &+= UInt64(bytes.count)
        var offset = 0
        while offset + 32 <= bytes.count {
            lanes.0 = unsafe Self.round(lanes.0, bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            lanes.1 = unsafe Self.round(lanes.1, bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
            lanes.2 = unsafe Self.round(lanes.2, bytes.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self))
            lanes.3 = unsafe Self.round(lanes.3, bytes.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self))
            offset += 32
        }
        if offset < bytes.count {
            var tail = [UInt8](repeating: 0, count: 32)
            for index in offset..<bytes.count { tail[index - offset] = unsafe bytes[index] }
            unsafe tail.withUnsafeBytes { unsafe add32($0) }
        }
    }

    mutating func add(_ bytes: [UInt8]) { unsafe bytes.withUnsafeBytes { unsafe add($0) } }

    mutating func add(_ value: UInt64) { unsafe withUnsafeBytes(of: value.littleEndian) { unsafe add($0) } }

    private mutating func add32(_ bytes: UnsafeRawBufferPointer) {
        lanes.0 = unsafe Self.round(lanes.0, bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        lanes.1 = unsafe Self.round(lanes.1, bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        lanes.2 = unsafe Self.round(lanes.2, bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        lanes.3 = unsafe Self.round(lanes.3, bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    var value: UInt64 {
        var h = lanes.0 ^ (lanes.1 &* 0x9E37_79B9_7F4A_7C15) ^ (lanes.2 &* 0xC2B2_AE3D_27D4_EB4F) ^ lanes.3 ^ length
        h ^= h >> 33
        h &*= 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        return h
    }
}

/// Little-endian writing of the state section.
struct StateWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u32(_ value: UInt32) { unsafe withUnsafeBytes(of: value.littleEndian) { unsafe bytes += $0 } }
    mutating func u64(_ value: UInt64) { unsafe withUnsafeBytes(of: value.littleEndian) { unsafe bytes += $0 } }
    /// One record: tag, length, payload, zero padding to 8 bytes.
    mutating func record(_ tag: SnapshotFormat.Tag, _ payload: [UInt8]) {
        u32(tag.rawValue)
        u32(UInt32(payload.count))
        bytes += payload
        while bytes.count % 8 != 0 { bytes.append(0) }
    }
}

/// Bounds-checked little-endian reading of untrusted bytes: every read says whether it fit.
struct StateReader {
    let bytes: [UInt8]
    var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var atEnd: Bool { offset >= bytes.count }
    mutating func u8() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }
    mutating func u32() -> UInt32? {
        guard let raw = take(4) else { return nil }
        return raw.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
    }
    mutating func u64() -> UInt64? {
        guard let raw = take(8) else { return nil }
        return raw.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
    mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, count <= bytes.count - offset else { return nil }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }
}

extension Snapshot {
    // MARK: Writing

    /// Saves the snapshot to `path`, atomically: it is written to a temporary file beside `path` and renamed
    /// over it, so a reader never sees half a file. Pages of zeros are left as holes.
    /// - Throws: ``SnapshotError/systemCallFailed(_:errno:)`` naming the call that failed.
    public func write(to path: String) throws(SnapshotError) {
        let state = encodedState()
        let stateOffset = UInt64(SnapshotFormat.headerSize)
        let imageOffset = (stateOffset + UInt64(state.count) + 0xFFF) & ~0xFFF
        var stateSum = Checksum()
        stateSum.add(state)
        let imageSum = imageChecksum()

        var header = [UInt8](repeating: 0, count: SnapshotFormat.headerSize)
        func put(_ value: UInt64, at offset: Int, bytes count: Int) {
            for index in 0..<count { header[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
        }
        header.replaceSubrange(0..<8, with: SnapshotFormat.magic)
        put(UInt64(SnapshotFormat.version), at: 8, bytes: 4)
        put(architecture == .amd64 ? 0 : 1, at: 12, bytes: 4)
        put(memorySize, at: 16, bytes: 8)
        put(imageOffset, at: 24, bytes: 8)
        put(stateOffset, at: 32, bytes: 8)
        put(UInt64(state.count), at: 40, bytes: 8)
        put(stateSum.value, at: 48, bytes: 8)
        put(imageSum, at: 56, bytes: 8)
        var headerSum = Checksum()
        unsafe header.withUnsafeBytes { unsafe headerSum.add(UnsafeRawBufferPointer(rebasing: $0[0..<64])) }
        put(headerSum.value, at: 64, bytes: 8)

        let temporary = path + ".tmp-\(getpid())"
        let fd = unsafe open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .systemCallFailed("open(\(temporary))", errno: errno) }
        do throws(SnapshotError) {
            try writeAll(fd: fd, header, at: 0)
            try writeAll(fd: fd, state, at: stateOffset)
            guard ftruncate(fd, off_t(imageOffset + memorySize)) == 0 else {
                throw .systemCallFailed("ftruncate", errno: errno)
            }
            try forEachNonZeroRun { address, count throws(SnapshotError) in
                unsafe try image.withBytes(at: address, count: Int(count)) { (bytes) throws(SnapshotError) in
                    unsafe try writeAll(fd: fd, bytes, at: imageOffset + address)
                }
            }
            guard fsync(fd) == 0 else { throw .systemCallFailed("fsync", errno: errno) }
            close(fd)
            guard unsafe rename(temporary, path) == 0 else { throw .systemCallFailed("rename(\(path))", errno: errno) }
        } catch {
            close(fd)
            unsafe unlink(temporary)
            throw error
        }
    }

    private func writeAll(fd: Int32, _ bytes: [UInt8], at offset: UInt64) throws(SnapshotError) {
        let result = unsafe bytes.withUnsafeBytes { buffer in
            Result { () throws(SnapshotError) in unsafe try writeAll(fd: fd, buffer, at: offset) }
        }
        try result.get()
    }

    private func writeAll(fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(SnapshotError) {
        var done = 0
        while done < buffer.count {
            // SAFETY: the source range stays inside `buffer`.
            let written = unsafe pwrite(
                fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if written < 0 {
                if errno == EINTR { continue }
                throw .systemCallFailed("write(snapshot file)", errno: errno)
            }
            done += written
        }
    }

    /// Calls `body` with each run of pages of the image that are not all zero. Holes in the image's file
    /// are skipped without being read.
    func forEachNonZeroRun<E: Error>(_ body: (_ address: UInt64, _ count: UInt64) throws(E) -> Void) throws(E) {
        try image.forEachDataExtent { (extent) throws(E) in
            let first = Int(extent.lowerBound >> 12), end = Int(extent.upperBound >> 12)
            var start: Int? = nil
            for page in first...end {
                let nonZero =
                    unsafe page < end && !image.withBytes(at: UInt64(page) << 12, count: 4096) { unsafe isZero($0) }
                if nonZero, start == nil { start = page }
                if !nonZero, let runStart = start {
                    try body(UInt64(runStart) << 12, UInt64(page - runStart) << 12)
                    start = nil
                }
            }
        }
    }

    /// Bytes of the image that hold something: its pages that are not all zero (the rest cost nothing, in
    /// memory or in a file).
    public var storedBytes: UInt64 {
        var total: UInt64 = 0
        forEachNonZeroRun { _, count in total += count }
        return total
    }

    /// The image's checksum: the index and bytes of every page that is not all zero, in order (so holes and
    /// stored zeros give the same sum).
    func imageChecksum() -> UInt64 {
        var sum = Checksum()
        forEachNonZeroRun { address, count in
            sum.add(address)
            unsafe image.withBytes(at: address, count: Int(count)) { unsafe sum.add($0) }
        }
        return sum.value
    }

    func encodedState() -> [UInt8] {
        var writer = StateWriter()
        var config = StateWriter()
        config.u64(configuration.memorySize)
        config.u64(configuration.loadAddress)
        config.u64(configuration.effectiveEntryPoint)
        config.u8(configuration.pageSizePolicy == .automatic ? 1 : 0)
        config.u32(UInt32(configuration.extraMappings.count))
        for mapping in configuration.extraMappings {
            config.u64(mapping.virtualBase)
            config.u64(mapping.physicalBase)
            config.u64(mapping.length)
            config.u32(BootInfo.flags(of: mapping))
        }
        writer.record(.configuration, config.bytes)
        writer.record(.registers, vcpu.registers.bytes)
        writer.record(.specialRegisters, vcpu.specialRegisters.bytes)
        writer.record(.xsave, vcpu.xsave.bytes)
        if let xcrs = vcpu.extendedControlRegisters { writer.record(.extendedControlRegisters, xcrs.bytes) }
        writer.record(.msrs, vcpu.modelSpecificRegisters.bytes)
        writer.record(.events, vcpu.events.bytes)
        writer.record(.debugRegisters, vcpu.debugRegisters.bytes)
        var roots = StateWriter()
        roots.u32(UInt32(self.roots.count))
        for root in self.roots { roots.u64(root) }
        writer.record(.roots, roots.bytes)
        var arena = StateWriter()
        for value in [self.arena.base, self.arena.end, self.arena.next, scratchNext] { arena.u64(value) }
        arena.u32(UInt32(self.arena.freeTables.count))
        for table in self.arena.freeTables { arena.u64(table) }
        writer.record(.arena, arena.bytes)
        writer.record(.leafSizes, [allowedLeafSizes.rawValue, walkableLeafSizes.rawValue])
        if let calls {
            var record = StateWriter()
            record.u64(calls.area)
            record.u64(calls.size)
            record.u8(waitingForCall ? 1 : 0)
            record.u32(UInt32(calls.names.count))
            for name in calls.names {
                let bytes = Array(name.utf8)
                record.u8(UInt8(bytes.count))
                record.bytes += bytes
            }
            writer.record(.calls, record.bytes)
        }
        return writer.bytes
    }

    // MARK: Loading

    /// Loads the snapshot saved at `path`. The memory image is mapped from the file, not read (the file
    /// must stay as it is while machines restored from it run); everything else is read and checked first:
    /// magic, version, architecture, sizes and offsets, checksums of the header, the state and the image,
    /// and that every address the state names lies inside RAM.
    ///
    /// - Parameters:
    ///   - path: the snapshot file.
    ///   - expected: refuse a file for another architecture (`nil`: accept either).
    /// - Throws: ``SnapshotError/invalidFile(path:problem:)`` naming what is wrong, one line.
    public convenience init(contentsOf path: String, architecture expected: Architecture? = nil) throws(SnapshotError) {
        func invalid(_ problem: String) -> SnapshotError { .invalidFile(path: path, problem: problem) }
        let fd = unsafe open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            throw invalid(code == ENOENT ? "does not exist" : "cannot be opened: \(errnoText(code))")
        }
        defer { close(fd) }
        var status = stat()
        guard unsafe fstat(fd, &status) == 0 else { throw invalid("cannot be read: \(errnoText(errno))") }
        guard status.st_mode & S_IFMT == S_IFREG else { throw invalid("is not a regular file") }
        let fileSize = UInt64(status.st_size)
        guard fileSize >= UInt64(SnapshotFormat.headerSize) else {
            throw invalid("is truncated: \(fileSize) bytes, shorter than its 4096-byte header")
        }
        let header = try Self.read(fd: fd, at: 0, count: SnapshotFormat.headerSize, path: path)
        var fields = StateReader(header)
        guard Array(fields.take(8)!) == SnapshotFormat.magic else {
            throw invalid("is not a microvm snapshot (its magic number is wrong)")
        }
        let version = fields.u32()!
        guard version == SnapshotFormat.version else {
            throw invalid("has format version \(version); this microvm reads version \(SnapshotFormat.version)")
        }
        let rawArchitecture = fields.u32()!
        let memorySize = fields.u64()!, imageOffset = fields.u64()!, stateOffset = fields.u64()!
        let stateLength = fields.u64()!, stateSum = fields.u64()!, imageSum = fields.u64()!, headerSum = fields.u64()!
        var computedHeaderSum = Checksum()
        unsafe header.withUnsafeBytes { unsafe computedHeaderSum.add(UnsafeRawBufferPointer(rebasing: $0[0..<64])) }
        guard computedHeaderSum.value == headerSum else {
            throw invalid("is corrupt: its header checksum does not match")
        }
        guard header[SnapshotFormat.headerFieldsSize...].allSatisfy({ $0 == 0 }) else {
            throw invalid("is corrupt: its header has bytes past its fields")
        }
        let architecture: Architecture
        switch rawArchitecture {
        case 0: architecture = .amd64
        case 1: architecture = .i686
        default: throw invalid("names an unknown architecture (\(rawArchitecture))")
        }
        if let expected, expected != architecture {
            throw invalid("holds an \(architecture) machine, not \(expected)")
        }
        guard memorySize > 0, memorySize & 0xFFF == 0, memorySize <= Layout.maximumMemorySize else {
            throw invalid("is corrupt: memory size \(memorySize) is not a multiple of 4 KiB up to 3 GiB")
        }
        // (An image offset so large that the image would end past 2^64 is misplaced too: no file reaches it.)
        guard stateOffset == UInt64(SnapshotFormat.headerSize), stateLength <= UInt64(SnapshotFormat.maximumStateSize),
            imageOffset & 0xFFF == 0, imageOffset >= stateOffset + stateLength, imageOffset <= UInt64.max - memorySize
        else { throw invalid("is corrupt: its sections overlap or are misplaced") }
        guard fileSize >= stateOffset + stateLength else {
            throw invalid("is truncated: \(fileSize) bytes, its state section ends at \(stateOffset + stateLength)")
        }
        guard fileSize >= imageOffset + memorySize else {
            throw invalid("is truncated: \(fileSize) bytes, its memory image ends at \(imageOffset + memorySize)")
        }
        let state = try Self.read(fd: fd, at: stateOffset, count: Int(stateLength), path: path)
        var computedStateSum = Checksum()
        computedStateSum.add(state)
        guard computedStateSum.value == stateSum else { throw invalid("is corrupt: its state checksum does not match") }
        let decoded: DecodedState
        do {
            decoded = try DecodedState(state, architecture: architecture, memorySize: memorySize)
        } catch {
            throw invalid("is corrupt: \(error.problem)")
        }
        let image: SnapshotImage
        do {
            guard let descriptor = Optional(dup(fd)), descriptor >= 0 else {
                throw SnapshotError.systemCallFailed("dup", errno: errno)
            }
            image = try SnapshotImage(adopting: descriptor, offset: imageOffset, size: memorySize)
        } catch {
            throw invalid("cannot be mapped: \(error)")
        }
        self.init(
            configuration: decoded.configuration, image: image, vcpu: decoded.vcpu, roots: decoded.roots,
            arena: decoded.arena, scratchNext: decoded.scratchNext, allowedLeafSizes: decoded.allowed,
            walkableLeafSizes: decoded.walkable, calls: decoded.calls, waitingForCall: decoded.waitingForCall)
        guard imageChecksum() == imageSum else { throw invalid("is corrupt: its memory image checksum does not match") }
    }

    private static func read(fd: Int32, at offset: UInt64, count: Int, path: String) throws(SnapshotError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = unsafe bytes.withUnsafeMutableBytes { buffer in
                // SAFETY: pread writes at most `count - done` bytes after `done` in the buffer.
                unsafe pread(fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw .invalidFile(path: path, problem: "cannot be read: \(errnoText(errno))")
            }
            if got == 0 { throw .invalidFile(path: path, problem: "is truncated") }
            done += got
        }
        return bytes
    }
}

/// What fuzzing the loader needs beyond the public API.
@_spi(Testing) public enum SnapshotFileTesting {
    /// `file` (a whole snapshot file's bytes) with its three checksums recomputed from its contents as they
    /// now are, so that a mutation reaches the decoder instead of stopping at a checksum. Files too short to
    /// hold the sections the header names come back unchanged.
    public static func resealed(_ file: [UInt8]) -> [UInt8] {
        guard file.count >= SnapshotFormat.headerSize else { return file }
        var bytes = file
        func field(_ offset: Int) -> UInt64 {
            (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
        }
        func put(_ value: UInt64, at offset: Int) {
            for index in 0..<8 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
        }
        let memorySize = field(16), imageOffset = field(24), stateOffset = field(32), stateLength = field(40)
        if stateOffset <= UInt64(bytes.count), stateLength <= UInt64(bytes.count) - stateOffset {
            var sum = Checksum()
            unsafe bytes.withUnsafeBytes {
                unsafe sum.add(UnsafeRawBufferPointer(rebasing: $0[Int(stateOffset)..<Int(stateOffset + stateLength)]))
            }
            put(sum.value, at: 48)
        }
        if memorySize & 0xFFF == 0, imageOffset <= UInt64(bytes.count), memorySize <= UInt64(bytes.count) - imageOffset
        {
            let pages = Int(memorySize >> 12)
            put(runChecksum(bytes, imageOffset: Int(imageOffset), pages: pages), at: 56)
        }
        var header = Checksum()
        unsafe bytes.withUnsafeBytes { unsafe header.add(UnsafeRawBufferPointer(rebasing: $0[0..<64])) }
        put(header.value, at: 64)
        return bytes
    }

    /// The image checksum as ``Snapshot/imageChecksum()`` computes it: run by run of non-zero pages.
    static func runChecksum(_ bytes: [UInt8], imageOffset: Int, pages: Int) -> UInt64 {
        var sum = Checksum()
        unsafe bytes.withUnsafeBytes { buffer in
            func page(_ index: Int) -> UnsafeRawBufferPointer {
                unsafe UnsafeRawBufferPointer(
                    rebasing: buffer[(imageOffset + index * 4096)..<(imageOffset + index * 4096 + 4096)])
            }
            var start: Int? = nil
            for index in 0...pages {
                let nonZero = unsafe index < pages && !isZero(page(index))
                if nonZero, start == nil { start = index }
                if !nonZero, let first = start {
                    sum.add(UInt64(first) << 12)
                    unsafe sum.add(
                        UnsafeRawBufferPointer(
                            rebasing: buffer[(imageOffset + first * 4096)..<(imageOffset + index * 4096)]))
                    start = nil
                }
            }
        }
        return sum.value
    }
}

/// The state section, decoded and checked against the memory it describes.
struct DecodedState {
    struct Problem: Error {
        let problem: String
        init(_ problem: String) { self.problem = problem }
    }

    var configuration: MachineConfiguration
    var vcpu: VCPUState
    var roots: [UInt64]
    var arena: ArenaState
    var scratchNext: UInt64
    var allowed: AllowedLeafSizes
    var walkable: AllowedLeafSizes
    var calls: CallInterface? = nil
    var waitingForCall = false

    init(_ bytes: [UInt8], architecture: Architecture, memorySize: UInt64) throws(Problem) {
        var records: [SnapshotFormat.Tag: [UInt8]] = [:]
        var reader = StateReader(bytes)
        while !reader.atEnd {
            guard let rawTag = reader.u32(), let length = reader.u32(), let payload = reader.take(Int(length)) else {
                throw Problem("a state record runs past the end of its section")
            }
            guard let tag = SnapshotFormat.Tag(rawValue: rawTag) else {
                throw Problem("unknown state record \(rawTag)")
            }
            guard records[tag] == nil else { throw Problem("state record \(tag) appears twice") }
            records[tag] = Array(payload)
            let padding = (8 - Int(length) % 8) % 8
            guard reader.take(padding).map({ $0.allSatisfy { $0 == 0 } }) == true else {
                throw Problem("state record \(tag) is not padded with zeros")
            }
        }
        func record(_ tag: SnapshotFormat.Tag) throws(Problem) -> [UInt8] {
            guard let payload = records[tag] else { throw Problem("the \(tag) record is missing") }
            return payload
        }
        func decode<T: KVMByteEncodable>(_: T.Type, _ tag: SnapshotFormat.Tag) throws(Problem) -> T {
            let payload = try record(tag)
            guard let value = T(bytes: payload) else {
                throw Problem("the \(tag) record (\(payload.count) bytes) is malformed")
            }
            return value
        }

        var config = StateReader(try record(.configuration))
        guard let size = config.u64(), let load = config.u64(), let entry = config.u64(), let policy = config.u8(),
            let mappingCount = config.u32(), mappingCount <= 4096
        else { throw Problem("the configuration record is malformed") }
        guard size == memorySize else { throw Problem("the configuration's memory size differs from the header's") }
        var configuration = MachineConfiguration(architecture: architecture, image: [])
        configuration.memorySize = size
        configuration.loadAddress = load
        configuration.entryPoint = entry
        configuration.pageSizePolicy = policy == 1 ? .automatic : .small
        for _ in 0..<mappingCount {
            guard let va = config.u64(), let pa = config.u64(), let length = config.u64(), let flags = config.u32()
            else { throw Problem("the configuration record's mappings are malformed") }
            let executable = flags & 2 != 0
            let kind: MappingKind =
                flags & 4 != 0
                ? .copyOnWrite(executable: executable) : .basic(writable: flags & 1 != 0, executable: executable)
            let mapping = Mapping(
                physicalBase: pa, virtualBase: va, length: length, kind: kind, userAccessible: flags & 8 != 0)
            do {
                switch architecture {
                case .amd64: try AMD64.validate(mapping)
                case .i686: try I686.validate(mapping)
                }
            } catch {
                throw Problem("mapping \(mapping) is invalid: \(error)")
            }
            configuration.extraMappings.append(mapping)
        }
        guard config.atEnd else { throw Problem("the configuration record has trailing bytes") }
        self.configuration = configuration

        vcpu = VCPUState(
            registers: try decode(Registers.self, .registers),
            specialRegisters: try decode(SpecialRegisters.self, .specialRegisters),
            xsave: try decode(XSaveArea.self, .xsave),
            extendedControlRegisters: records[.extendedControlRegisters] == nil
                ? nil : try decode(ExtendedControlRegisters.self, .extendedControlRegisters),
            modelSpecificRegisters: try decode(ModelSpecificRegisters.self, .msrs),
            events: try decode(VCPUEvents.self, .events),
            debugRegisters: try decode(DebugRegisters.self, .debugRegisters))

        // The vCPU must be in the mode the header names: long mode exactly for amd64.
        let longMode = vcpu.specialRegisters.efer.contains(.lma)
        guard longMode == (architecture == .amd64) else {
            throw Problem("the header names \(architecture) but the vCPU is \(longMode ? "" : "not ")in long mode")
        }

        func insideRAM(_ address: UInt64, _ what: String) throws(Problem) {
            guard address & 0xFFF == 0, address < memorySize else {
                throw Problem("\(what) \(hex(address)) is not a page inside the \(byteSize(memorySize)) of RAM")
            }
        }
        var rootReader = StateReader(try record(.roots))
        guard let rootCount = rootReader.u32(), rootCount >= 1, rootCount <= UInt32(Machine.maximumRoots) else {
            throw Problem("the roots record holds no root or too many")
        }
        roots = []
        for _ in 0..<rootCount {
            guard let root = rootReader.u64() else { throw Problem("the roots record is malformed") }
            try insideRAM(root, "root")
            roots.append(root)
        }
        guard rootReader.atEnd else { throw Problem("the roots record has trailing bytes") }

        var arenaReader = StateReader(try record(.arena))
        guard let base = arenaReader.u64(), let end = arenaReader.u64(), let next = arenaReader.u64(),
            let scratchNext = arenaReader.u64(), let freeCount = arenaReader.u32(),
            freeCount <= UInt32(memorySize >> 12)
        else { throw Problem("the arena record is malformed") }
        guard base & 0xFFF == 0, end & 0xFFF == 0, next & 0xFFF == 0, base <= next, next <= end, end <= memorySize,
            scratchNext & 0xFFF == 0, scratchNext <= base
        else { throw Problem("the arena record's bounds are not pages inside RAM in order") }
        var freeTables: [UInt64] = []
        for _ in 0..<freeCount {
            guard let table = arenaReader.u64(), table & 0xFFF == 0, table >= base, table < next else {
                throw Problem("the arena record's free tables are not tables of the arena")
            }
            freeTables.append(table)
        }
        guard arenaReader.atEnd else { throw Problem("the arena record has trailing bytes") }
        arena = ArenaState(base: base, end: end, next: next, freeTables: freeTables)
        self.scratchNext = scratchNext

        let sizes = try record(.leafSizes)
        guard sizes.count == 2, sizes[0] & ~AllowedLeafSizes.all.rawValue == 0,
            sizes[1] & ~AllowedLeafSizes.all.rawValue == 0
        else { throw Problem("the leaf-size record is malformed") }
        allowed = AllowedLeafSizes(rawValue: sizes[0])
        walkable = AllowedLeafSizes(rawValue: sizes[1])

        if let payload = records[.calls] {
            var reader = StateReader(payload)
            guard let area = reader.u64(), let size = reader.u64(), let waiting = reader.u8(), waiting <= 1,
                let count = reader.u32(), count <= UInt32(CallArea.maximumExports)
            else { throw Problem("the calls record is malformed") }
            guard area & 0xFFF == 0, size >= 4096, size & 0xFFF == 0, size <= 1 << 20, area <= memorySize,
                size <= memorySize - area
            else { throw Problem("the call area \(hex(area)) + \(hex(size)) is not whole pages inside RAM") }
            var names: [String] = []
            var indexByName: [String: Int] = [:]
            for index in 0..<Int(count) {
                guard let length = reader.u8(), length >= 1, Int(length) <= CallArea.maximumNameLength,
                    let raw = reader.take(Int(length)), let name = String(validating: Array(raw), as: UTF8.self),
                    indexByName[name] == nil
                else { throw Problem("the calls record's names are malformed") }
                names.append(name)
                indexByName[name] = index
            }
            guard reader.atEnd else { throw Problem("the calls record has trailing bytes") }
            calls = CallInterface(names: names, indexByName: indexByName, area: area, size: size)
            waitingForCall = waiting == 1
        }
    }
}

/// `0` when every byte of `bytes` (a whole number of 8-byte words) is zero.
@inline(__always)
func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var any: UInt64 = 0
    var offset = 0
    while offset + 8 <= bytes.count {
        unsafe any |= bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        offset += 8
    }
    return any == 0
}
