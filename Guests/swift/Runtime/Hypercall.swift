// Hypercalls (docs/layout.md, "Hypercalls"): the guest fills a 64-byte record and writes its guest-physical
// address to port 0x510 with a 32-bit `out`; the host acts, writes the result into the record and resumes.

import GuestSupport

enum Hypercall {
    /// The hypercall port.
    static let port: UInt16 = 0x510
    /// Where the runtime keeps its record: in the guest-runtime scratch page (docs/layout.md), which is
    /// identity-mapped, so this address is both the pointer and the guest-physical address the host reads.
    static let recordAddress: UInt = 0x3800

    /// Operation numbers.
    enum Operation: UInt32 {
        /// Append the arguments to the machine's reports (tests read them). Result 0.
        case report = 1
        /// An exception the guest cannot handle: vector, error code, CR2, RIP. The host ends the run.
        case fatalException = 2
        /// Copy the copy-on-write page holding the argument into a private frame and map it writable.
        /// Result 0 done, 1 not a copy-on-write page.
        case resolveCopyOnWrite = 3
        /// Ready for calls: export table, entry count, call area, its size. The run ends; each call continues
        /// after the `out` (Calls.swift).
        case ready = 6
        /// Call a host function: name, name length, argument descriptors, their count, result buffer, its
        /// capacity. Result 0 done, 1 no such function, 2 unreadable arguments, 3 the result does not fit,
        /// 4 the host function failed (Calls.swift).
        case callHost = 7
    }

    /// Issues `operation` with the first `count` (at most 6) of the arguments; returns the host's result
    /// (1 if no host answered: the record's result starts at 1).
    @discardableResult
    static func call(
        _ operation: Operation, count: Int, _ a0: UInt64 = 0, _ a1: UInt64 = 0, _ a2: UInt64 = 0,
        _ a3: UInt64 = 0, _ a4: UInt64 = 0, _ a5: UInt64 = 0
    ) -> UInt64 {
        let record = UnsafeMutableRawPointer(bitPattern: recordAddress).unsafelyUnwrapped
        record.storeBytes(of: operation.rawValue, toByteOffset: 0, as: UInt32.self)
        record.storeBytes(of: UInt32(truncatingIfNeeded: count), toByteOffset: 4, as: UInt32.self)
        record.storeBytes(of: 1, toByteOffset: 8, as: UInt64.self)
        record.storeBytes(of: a0, toByteOffset: 16, as: UInt64.self)
        record.storeBytes(of: a1, toByteOffset: 24, as: UInt64.self)
        record.storeBytes(of: a2, toByteOffset: 32, as: UInt64.self)
        record.storeBytes(of: a3, toByteOffset: 40, as: UInt64.self)
        record.storeBytes(of: a4, toByteOffset: 48, as: UInt64.self)
        record.storeBytes(of: a5, toByteOffset: 56, as: UInt64.self)
        guest_outl(port, UInt32(truncatingIfNeeded: recordAddress))  // "memory" clobber: the stores go first
        return record.load(fromByteOffset: 8, as: UInt64.self)
    }

    /// Reports up to six values (the host appends exactly the first `count` to its report list).
    static func report(
        _ a0: UInt64, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0, _ a4: UInt64 = 0, _ a5: UInt64 = 0,
        count: Int
    ) {
        call(.report, count: count, a0, a1, a2, a3, a4, a5)
    }

    /// Asks the host to resolve a write fault at `address` on a copy-on-write page; true when it did (the
    /// caller then `invlpg`s the address and retries).
    static func resolveCopyOnWrite(at address: UInt64) -> Bool {
        call(.resolveCopyOnWrite, count: 1, address) == 0
    }

    /// Tells the host about an exception the guest cannot handle; the host ends the run with one line.
    static func fatalException(vector: UInt64, errorCode: UInt64, cr2: UInt64, instructionPointer: UInt64) {
        call(.fatalException, count: 4, vector, errorCode, cr2, instructionPointer)
    }
}
