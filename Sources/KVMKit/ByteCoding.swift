/// A vCPU-state value with a stable byte encoding, for storing in snapshot files.
///
/// Every KVMKit encoding is little-endian and has the byte layout of the corresponding kernel structure
/// on x86-64 (that layout is kernel ABI, so it does not change between kernel versions): padding and
/// reserved bytes are written as zero and ignored when reading. Each conforming type documents its
/// layout. `init?(bytes:)` returns `nil` for a buffer of the wrong length (or an impossible count);
/// `Self(bytes: value.bytes) == value` for every value.
public protocol KVMByteEncodable: Equatable, Sendable {
    /// Decodes a value from its encoding, or returns `nil` if `bytes` is not a valid encoding.
    init?(bytes: [UInt8])
    /// The value's encoding.
    var bytes: [UInt8] { get }
}

/// Reads little-endian integers from consecutive offsets of a byte buffer.
///
/// Decoders check the buffer's length before reading, so a read past the end is a programmer error and
/// traps.
///
/// `@safe`: its buffer is only ever the one `decodeBytes` / `decodeKernel` hand it, valid for the closure
/// that receives the reader inout, and every read is bounds-checked.
@safe struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) { unsafe self.buffer = unsafe buffer }

    mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        let size = MemoryLayout<T>.size
        unsafe precondition(offset >= 0 && size <= buffer.count - offset, "read past the end of an encoding")
        // SAFETY: the `size` bytes at `offset` lie inside the buffer (checked above); an unaligned load of
        // a trivial integer type is always valid.
        let value = unsafe T(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += size
        return value
    }

    mutating func readBool() -> Bool { read(UInt8.self) != 0 }

    /// The next `count` bytes, copied.
    mutating func readBytes(_ count: Int) -> [UInt8] {
        unsafe precondition(count >= 0 && count <= buffer.count - offset, "read past the end of an encoding")
        // SAFETY: the range lies inside the buffer (checked above).
        let bytes = unsafe Array(buffer[offset..<offset + count])
        offset += count
        return bytes
    }

    mutating func skip(_ count: Int) {
        unsafe precondition(count >= 0 && count <= buffer.count - offset, "skip past the end of an encoding")
        offset += count
    }
}

/// Writes little-endian integers to consecutive offsets of a zero-filled byte buffer.
///
/// `@safe`: its buffer is only ever the one `encodeBytes` / `encodeKernel` hand it, valid for the closure
/// that receives the writer inout, and every write is bounds-checked.
@safe struct ByteWriter {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var offset = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) { unsafe self.buffer = unsafe buffer }

    mutating func write<T: FixedWidthInteger>(_ value: T) {
        let size = MemoryLayout<T>.size
        unsafe precondition(offset >= 0 && size <= buffer.count - offset, "write past the end of an encoding")
        // SAFETY: the `size` bytes at `offset` lie inside the buffer (checked above); `storeBytes` allows
        // unaligned stores of trivial types.
        unsafe buffer.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
        offset += size
    }

    mutating func write(_ value: Bool) { write(UInt8(value ? 1 : 0)) }

    /// Writes `bytes`, which must be exactly `count` long.
    mutating func write(bytes: [UInt8], count: Int) {
        unsafe precondition(bytes.count == count && count <= buffer.count - offset, "wrong byte count in an encoding")
        for (index, byte) in bytes.enumerated() {
            // SAFETY: `offset + index` < `offset + count` <= `buffer.count` (checked above).
            unsafe buffer[offset + index] = byte
        }
        offset += count
    }

    /// Leaves `count` bytes (padding, reserved) as they are: zero.
    mutating func skip(_ count: Int) {
        unsafe precondition(count >= 0 && count <= buffer.count - offset, "skip past the end of an encoding")
        offset += count
    }
}

/// A zero-filled `count`-byte array written by `body`, which must fill it exactly.
func encodeBytes(count: Int, _ body: (inout ByteWriter) -> Void) -> [UInt8] {
    unsafe [UInt8](unsafeUninitializedCapacity: count) { storage, initialized in
        // SAFETY: `storage` has room for `count` bytes; they are all initialised (to 0) before the writer
        // sees them, and `initialized` is set to `count` only then.
        unsafe storage.initialize(repeating: 0)
        var writer = unsafe ByteWriter(UnsafeMutableRawBufferPointer(storage))
        body(&writer)
        precondition(writer.offset == count, "an encoding did not fill its \(count) bytes")
        initialized = count
    }
}

/// Runs `body` on a reader over `bytes`.
func decodeBytes<T>(_ bytes: [UInt8], _ body: (inout ByteReader) -> T) -> T {
    // SAFETY: the array's storage is valid for the duration of the closure and is only read.
    unsafe bytes.withUnsafeBytes { buffer in
        var reader = unsafe ByteReader(buffer)
        return body(&reader)
    }
}

/// Runs `body` on a reader over the bytes of the kernel struct `kernel`.
func decodeKernel<K, T>(_ kernel: K, _ body: (inout ByteReader) -> T) -> T {
    // SAFETY: a read-only view of a local copy of a trivial C struct, valid during the closure.
    unsafe withUnsafeBytes(of: kernel) { buffer in
        var reader = unsafe ByteReader(buffer)
        return body(&reader)
    }
}

/// Writes the kernel struct `kernel` (zero-initialised by the caller) with `body`.
func encodeKernel<K>(_ kernel: inout K, _ body: (inout ByteWriter) -> Void) {
    // SAFETY: a writable view of a trivial C struct, valid during the closure; every byte pattern is a
    // valid value of it.
    unsafe withUnsafeMutableBytes(of: &kernel) { buffer in
        var writer = unsafe ByteWriter(buffer)
        body(&writer)
    }
}
