import PageTables

/// Hypercalls: a guest writes the address of a record to ``Layout/hypercallPort`` (32-bit `out`); the host
/// finds the record through the tables in CR3 (with RAM identity-mapped, its guest-physical address is the
/// same), reads it, acts, writes the result into it, and resumes the guest.
///
/// Record (little-endian, 64 bytes, 8-byte aligned): u32 operation, u32 argument count N (at most 6),
/// u64 result, then N u64 arguments.
public enum HypercallOperation: UInt32, Sendable {
    /// Report values to the host, which keeps them in order (a testing aid). Result 0.
    case report = 1
    /// An exception the guest cannot handle: vector, error code, CR2, RIP. Ends the run.
    case fatalException = 2
    /// Resolve a write fault on a copy-on-write page at CR2 (argument 0); argument 1, if given, is the #PF
    /// error code, whose U/S bit (2) marks a write from CPL 3, which only a user page may take. Result 0
    /// resolved, 1 not copy-on-write (or not a user page for a user write).
    case resolveCopyOnWrite = 3
    /// Snapshot here: the run returns ``RunOutcome/snapshotRequested``; a machine restored from a snapshot
    /// taken now continues after the request. Result 0.
    case snapshot = 4
    /// Register the root table at the guest-physical address in argument 0 as an address space of the
    /// machine (snapshots keep it). Result: its index, or `UInt64.max` when refused (not a page-aligned
    /// table in RAM, or too many).
    case registerRoot = 5
    /// Ready for calls: arguments are the export table's address and entry count, and the call area's
    /// address and size (guest-virtual; the call area must be whole pages, 4 KiB to 1 MiB, contiguous and
    /// writable). The run returns ``RunOutcome/ready``.
    case ready = 6
    /// Call a host function: arguments are the name's address and length, the argument descriptors'
    /// address and count, and the result buffer's address and capacity. Result: the status (0 done, 1 no
    /// such function, 2 unreadable arguments, 3 the result does not fit, 4 the host function failed).
    case callHost = 7
}

extension Machine {
    /// Reports kept per run: room for every probe, with a bound a looping guest cannot grow past.
    static let maximumReports = 1 << 16

    /// Serves the hypercall whose record is at guest-virtual `address`.
    func hypercall(recordAddress address: UInt64) throws(GuestFault) -> DeviceResponse {
        // The record is 64 bytes, 8-aligned, inside one page, and writable by the guest (the host writes
        // the result into it).
        guard address & 7 == 0, address & 0xFFF <= 4096 - 64,
            let translation = try? addressSpaceInCR3().lookup(address), translation.kind.isWritable,
            memory.contains(translation.physicalAddress, count: 64)
        else {
            throw fault(
                .badHypercall("record at \(hex(address)) is not an aligned 64-byte block of writable memory"))
        }
        let recordAddress = translation.physicalAddress
        guard let rawOperation = memory.load(UInt32.self, at: recordAddress),
            let count = memory.load(UInt32.self, at: recordAddress + 4)
        else { throw fault(.badHypercall("record at \(hex(address)) is outside RAM")) }
        guard count <= 6 else { throw fault(.badHypercall("\(count) arguments, at most 6")) }
        let arguments = (0..<UInt64(count)).map { memory.load(UInt64.self, at: recordAddress + 16 + $0 * 8) ?? 0 }
        func argument(_ i: Int) -> UInt64 { i < arguments.count ? arguments[i] : 0 }
        guard let operation = HypercallOperation(rawValue: rawOperation) else {
            throw fault(.badHypercall("unknown operation \(rawOperation) at \(hex(address))"))
        }
        var result: UInt64 = 0
        switch operation {
        case .report:
            guard reports.count < Self.maximumReports else {
                throw fault(.badHypercall("more than \(Self.maximumReports) reports"))
            }
            reports.append(arguments)
        case .fatalException:
            throw reportedException(vector: argument(0), errorCode: argument(1), cr2: argument(2), rip: argument(3))
        case .resolveCopyOnWrite:
            if let resolution = image.resolveCopyOnWrite(at: argument(0), userAccess: argument(1) & 0x4 != 0) {
                copyOnWriteResolutions.append(resolution)
                // The remap may have moved the host's tables to copies: the guest must walk the new ones.
                do {
                    try followHostRoot()
                } catch {
                    throw fault(.badHypercall("the vCPU's CR3 could not follow the host's tables: \(error)"))
                }
            } else {
                result = 1
            }
        case .snapshot:
            memory.store(UInt64(0), at: recordAddress + 8)
            return .stop(.snapshotRequested)
        case .registerRoot:
            result = (try? registerRoot(argument(0))).map { UInt64($0) } ?? UInt64.max
        case .ready:
            memory.store(UInt64(0), at: recordAddress + 8)
            return try registerCalls(exports: argument(0), count: argument(1), area: argument(2), size: argument(3))
        case .callHost:
            result = callHost(
                name: argument(0), nameLength: argument(1), arguments: argument(2), count: argument(3),
                result: argument(4), capacity: argument(5))
        }
        memory.store(result, at: recordAddress + 8)
        return .resume
    }

    /// An exception the guest's handler reported as fatal, with the translation of CR2 for a page fault.
    func reportedException(vector: UInt64, errorCode: UInt64, cr2: UInt64, rip: UInt64) -> GuestFault {
        let space = addressSpaceInCR3()
        let cr3 = try? vcpu.specialRegisters().cr3
        return GuestFault(
            .exception(vector: vector, errorCode: errorCode), rip: rip, cr2: cr2, cr3: cr3,
            ripTranslation: AddressTranslation(of: rip, in: space),
            cr2Translation: AddressTranslation(of: cr2, in: space))
    }
}
