@_spi(Testing) import MicroVM
import PageTables
import Testing

// The engine-predicted model: what each probe must report, derived from the live tables alone. It is the
// second opinion next to the hand-written expectations of every scenario: both must match what the guest
// reported, on KVM and on QEMU.

/// Page-fault error code bits (Intel SDM Vol. 3A §4.7).
let errorPresent: UInt64 = 1 << 0
let errorWrite: UInt64 = 1 << 1
let errorUser: UInt64 = 1 << 2
let errorFetch: UInt64 = 1 << 4

extension Probe {
    /// The RIP / EIP the probe guest reports for a fault in this probe's access slot (Guests/probe64.S: slot k
    /// at load + 0x10 * (k + 1)); `secondHalf` for the i686 8-byte slots' access at va + 4 (slot + 2).
    func slotAddress(loadAddress: UInt64, secondHalf: Bool = false) -> UInt64 {
        let log2Size = UInt64(size.trailingZeroBitCount)
        let slot: UInt64 =
            switch operation {
            case .read: log2Size
            case .write: 4 + log2Size
            case .execute: 8
            case .invalidate: 9
            }
        return loadAddress + 0x10 * (slot + 1) + (secondHalf ? 2 : 0)
    }
}

/// Predicts the probe guest's reports from the engine's view of the tables: every access is looked up
/// (`lookup` applies every level's permissions: a page is writable, and user-accessible, only if every
/// entry on the walk says so) and allowed or faulted exactly as the CPU must (SDM Vol. 3A §4.6: at CPL 3 a
/// page must be user-accessible, and writable for a write, whatever CR0.WP; at CPL 0 writes need R/W with
/// CR0.WP set; fetches need no NX on the way); reads and writes are modelled on a copy of RAM; a write to a
/// copy-on-write page is resolved as the host resolves it (a private copy of the frame, writable from then
/// on; for a write at CPL 3 only a user page) when a host is in the loop. CR2 is followed through every
/// #PF, resolved ones too, for the #GP an `invlpg` at CPL 3 raises.
struct ProbeModel {
    /// The image as built, before the guest runs.
    let image: BootImage
    /// Whether a write fault on a copy-on-write page is resolved (hypercall 3, or a host answering `C`
    /// lines) rather than reported.
    let resolvesCopyOnWrite: Bool

    /// Bytes written so far, by physical address (private copies live above every real address).
    private var written: [UInt64: UInt8] = [:]
    /// Pages the host gave a private copy: 4 KiB virtual page -> what it maps now.
    private var copies: [UInt64: Page] = [:]
    private static let copyBase: UInt64 = 1 << 60
    /// CR2 as the guest will read it: the address of the last page fault (0 at boot).
    private var cr2: UInt64 = 0

    /// What an access sees at a virtual address: the physical address there, the permissions, and the
    /// bytes left in its leaf.
    private struct Page {
        var physicalAddress: UInt64
        var kind: MappingKind
        var userAccessible: Bool
        var length: UInt64
    }

    private enum Access { case read, write, fetch }
    private enum Outcome {
        case frame(UInt64)
        case fault(errorCode: UInt64)
    }

    init(image: BootImage, resolvesCopyOnWrite: Bool) {
        self.image = image
        self.resolvesCopyOnWrite = resolvesCopyOnWrite
    }

    private var architecture: Architecture { image.configuration.architecture }

    /// The six numbers each probe must report, in order.
    mutating func reports(for probes: [Probe]) throws -> [[UInt64]] {
        var reports: [[UInt64]] = []
        for (index, probe) in probes.enumerated() { reports.append(try report(index, probe)) }
        return reports
    }

    private mutating func report(_ index: Int, _ probe: Probe) throws -> [UInt64] {
        let i = UInt64(index)
        let loadAddress = image.configuration.loadAddress
        let i686 = architecture == .i686
        let va = i686 ? probe.virtualAddress & 0xFFFF_FFFF : probe.virtualAddress
        let user = probe.userMode || image.bootInfo.flags.contains(.probesInUserMode)
        switch probe.operation {
        case .read, .write:
            guard [1, 2, 4, 8].contains(probe.size) else {
                return [i, 2, UInt64(probe.operation.rawValue), UInt64(probe.size), 0, 0]
            }
            let write = probe.operation == .write
            // The guest's accesses: i686 splits 8 bytes into two 4-byte accesses at va and va + 4.
            let parts: [(va: UInt64, size: Int, secondHalf: Bool)] =
                i686 && probe.size == 8
                ? [(va, 4, false), ((va + 4) & 0xFFFF_FFFF, 4, true)] : [(va, Int(probe.size), false)]
            var value: UInt64 = 0
            for (partIndex, part) in parts.enumerated() {
                switch try access(write ? .write : .read, at: part.va, size: part.size, user: user, probe: index) {
                case .fault(let errorCode):
                    let rip = probe.slotAddress(loadAddress: loadAddress, secondHalf: part.secondHalf)
                    return [i, 1, 14, errorCode, part.va, rip]
                case .frame(let pa):
                    for k in 0..<part.size {
                        let shift = UInt64(partIndex * 4 + k) * 8
                        if write {
                            written[pa + UInt64(k)] = UInt8(truncatingIfNeeded: probe.value >> shift)
                        } else {
                            value |= UInt64(byte(pa + UInt64(k))) << shift
                        }
                    }
                }
            }
            return [i, 0, write ? 0 : value, 0, 0, 0]
        case .execute:
            switch try access(.fetch, at: va, size: 1, user: user, probe: index) {
            case .fault(let errorCode):
                return [i, 1, 14, errorCode, va, va]  // a fetch fault reports the target as RIP
            case .frame(let pa):
                #expect(byte(pa) == 0xC3, "probe \(index): no ret at the target")
                return [i, 0, 0, 0, 0, 0]
            }
        case .invalidate:
            // `invlpg` is privileged: #GP(0) at CPL 3, reported with whatever CR2 holds.
            return user ? [i, 1, 13, 0, cr2, probe.slotAddress(loadAddress: loadAddress)] : [i, 0, 0, 0, 0, 0]
        }
    }

    /// One access of `size` bytes at `va` (at CPL 3 when `user`): the physical address it reaches, or the
    /// #PF error code it raises.
    private mutating func access(_ access: Access, at va: UInt64, size: Int, user: Bool, probe index: Int) throws
        -> Outcome
    {
        // The error code describes the access (I/D only where NX exists: amd64 with EFER.NXE).
        let accessBits =
            (access == .write ? errorWrite : 0) | (user ? errorUser : 0)
            | (access == .fetch && architecture == .amd64 ? errorFetch : 0)
        guard var page = try page(at: va) else {
            cr2 = va
            return .fault(errorCode: accessBits)
        }
        #expect(page.length >= UInt64(size), "probe \(index): the scenario must not cross a leaf in one access")
        func allowed(_ page: Page) -> Bool {
            guard !user || page.userAccessible else { return false }
            switch access {
            case .read: return true
            case .write: return page.kind.isWritable
            case .fetch: return page.kind.isExecutable
            }
        }
        guard !allowed(page) else { return .frame(page.physicalAddress) }
        cr2 = va
        // The runtime asks the host about every write fault on a present page; the host copies a
        // copy-on-write page, unless the write came from CPL 3 and the page is not a user page.
        if access == .write, resolvesCopyOnWrite, case .copyOnWrite(let executable) = page.kind,
            !user || page.userAccessible
        {
            page = resolve(va, page, executable: executable)
            if allowed(page) { return .frame(page.physicalAddress) }
        }
        return .fault(errorCode: accessBits | errorPresent)
    }

    /// What the guest sees at `va`: a private copy the host made, or the tables as built.
    private func page(at va: UInt64) throws -> Page? {
        let offset = va & 0xFFF
        if let copy = copies[va - offset] {
            return Page(
                physicalAddress: copy.physicalAddress + offset, kind: copy.kind, userAccessible: copy.userAccessible,
                length: 0x1000 - offset)
        }
        guard let translation = try image.addressSpace.lookup(va) else { return nil }
        return Page(
            physicalAddress: translation.physicalAddress, kind: translation.kind,
            userAccessible: translation.userAccessible, length: translation.length)
    }

    /// The host's copy-on-write resolution of the page of `va`: its frame's current bytes in a fresh frame,
    /// mapped writable (execute and U/S kept).
    private mutating func resolve(_ va: UInt64, _ page: Page, executable: Bool) -> Page {
        let offset = va & 0xFFF
        let frame = page.physicalAddress - offset
        let copy = Self.copyBase + UInt64(copies.count) << 12
        for k in UInt64(0)..<0x1000 { written[copy + k] = byte(frame + k) }
        let kind = MappingKind.basic(writable: true, executable: executable)
        copies[va - offset] = Page(
            physicalAddress: copy, kind: kind, userAccessible: page.userAccessible, length: 0x1000)
        return Page(
            physicalAddress: copy + offset, kind: kind, userAccessible: page.userAccessible, length: 0x1000 - offset)
    }

    private func byte(_ pa: UInt64) -> UInt8 { written[pa] ?? image.memory.load(UInt8.self, at: pa) ?? 0xFF }
}
