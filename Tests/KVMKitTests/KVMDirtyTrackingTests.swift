@preconcurrency import Glibc
import KVMKit
import Testing

/// A guest that writes one byte to each of three pages (2, 3 and 4) and halts; its code is on page 1.
private let threePageWriter: [UInt8] = [
    0xC6, 0x06, 0x00, 0x20, 0x01,  // mov byte [0x2000], 1
    0xC6, 0x06, 0x00, 0x30, 0x01,  // mov byte [0x3000], 1
    0xC6, 0x06, 0x34, 0x42, 0x01,  // mov byte [0x4234], 1
    0xF4,  // hlt
]

/// A dirty-ring entry as harvested: the slot and the page offset inside it.
private struct DirtyPage: Hashable {
    var slot: UInt32
    var page: UInt64
}

/// Dirty tracking against a real guest: the ring and the bitmap each report exactly the pages the guest
/// wrote, and report them again after a reset.
@Suite(.enabled(if: kvmUsable, kvmReason))
struct KVMDirtyTrackingTests {
    @Test("the dirty ring reports exactly the three pages the guest wrote, again after reset and re-run")
    func ring() throws {
        let guest = try RealModeGuest(code: threePageWriter, slotFlags: .logDirtyPages, dirtyRingBytes: 65536)
        #expect(guest.vcpu.dirtyRingCapacity == 4096)
        var pages: [DirtyPage] = []
        pages.reserveCapacity(16)
        // Setting up the vCPU (CPUID, special and general registers) and host writes dirty nothing.
        guest.write([0xAA], at: 0x5000)
        #expect(try guest.vm.harvestDirtyRing(of: guest.vcpu) { pages.append(DirtyPage(slot: $0, page: $1)) } == 0)

        #expect(try guest.vcpu.run() == .halt)
        let first = try guest.vm.harvestDirtyRing(of: guest.vcpu) { pages.append(DirtyPage(slot: $0, page: $1)) }
        #expect(first == 3)
        #expect(pages == [DirtyPage(slot: 0, page: 2), DirtyPage(slot: 0, page: 3), DirtyPage(slot: 0, page: 4)])
        // Harvested and reset: nothing more until the guest writes again.
        #expect(guest.vcpu.collectDirtyRing { _, _ in Issue.record("entry after reset") } == 0)

        pages.removeAll(keepingCapacity: true)
        try guest.restart()
        #expect(try guest.vcpu.run() == .halt)
        #expect(guest.vcpu.collectDirtyRing { pages.append(DirtyPage(slot: $0, page: $1)) } == 3)
        #expect(try guest.vm.resetDirtyRings() == 3)
        #expect(Set(pages) == [DirtyPage(slot: 0, page: 2), DirtyPage(slot: 0, page: 3), DirtyPage(slot: 0, page: 4)])
    }

    @Test("the ring is refused once a vCPU exists")
    func ringAfterVCPU() throws {
        let guest = try RealModeGuest(code: [0xF4])
        #expect(throws: KVMError.callFailed(call: "KVM_ENABLE_CAP", errno: EINVAL)) {
            try guest.vm.enableDirtyRing(byteCount: 65536)
        }
    }

    /// On kvm_pvm a run that logs more writes than the ring holds overflows it without a ring-full exit
    /// in time (each emulated write logs an entry, even to the same page); elsewhere the vCPU exits with
    /// dirtyRingFull first. Either way the caller can tell: an exit, or a harvest of the whole capacity.
    @Test("more writes than the ring holds: a ring-full exit, or a harvest of the whole ring")
    func ringFull() throws {
        let guest = try RealModeGuest(
            code: [
                0xB9, 0x2C, 0x01,  // mov cx, 300
                0xC6, 0x06, 0x00, 0x20, 0x01,  // l: mov byte [0x2000], 1
                0xE2, 0xF9,  // loop l
                0xF4,  // hlt
            ], slotFlags: .logDirtyPages, dirtyRingBytes: 4096)
        #expect(guest.vcpu.dirtyRingCapacity == 256)
        var sawFull = false
        var largestHarvest = 0
        for _ in 0..<8 {
            let exit = try guest.vcpu.run()
            largestHarvest = max(
                largestHarvest,
                try guest.vm.harvestDirtyRing(of: guest.vcpu) { _, page in
                    #expect(page == 2)
                })
            if exit == .dirtyRingFull { sawFull = true; continue }
            #expect(exit == .halt)
            break
        }
        #expect(sawFull || largestHarvest == guest.vcpu.dirtyRingCapacity)
    }

    @Test("the dirty bitmap reports exactly the three pages, clears them, and reports them after a re-run")
    func bitmap() throws {
        let guest = try RealModeGuest(code: threePageWriter, slotFlags: .logDirtyPages, manualDirtyLogProtection: true)
        var bitmap = [UInt64](repeating: 0, count: 1)  // 16 pages
        try guest.vm.dirtyLog(slot: 0, into: &bitmap)
        #expect(bitmap == [0])

        #expect(try guest.vcpu.run() == .halt)
        try guest.vm.dirtyLog(slot: 0, into: &bitmap)
        #expect(bitmap == [0b1_1100])  // pages 2, 3, 4
        // With manual protection the log stays until cleared.
        try guest.vm.dirtyLog(slot: 0, into: &bitmap)
        #expect(bitmap == [0b1_1100])
        try guest.vm.clearDirtyLog(slot: 0, firstPage: 0, pageCount: 16, bitmap: bitmap)
        try guest.vm.dirtyLog(slot: 0, into: &bitmap)
        #expect(bitmap == [0])

        try guest.restart()
        #expect(try guest.vcpu.run() == .halt)
        try guest.vm.dirtyLog(slot: 0, into: &bitmap)
        #expect(bitmap == [0b1_1100])
    }

    @Test("a clear that is not 64-page aligned is refused with KVM_CLEAR_DIRTY_LOG and EINVAL")
    func misalignedClear() throws {
        let guest = try RealModeGuest(code: [0xF4], slotFlags: .logDirtyPages, manualDirtyLogProtection: true)
        #expect(throws: KVMError.callFailed(call: "KVM_CLEAR_DIRTY_LOG", errno: EINVAL)) {
            try guest.vm.clearDirtyLog(slot: 0, firstPage: 1, pageCount: 8, bitmap: [0xFF])
        }
    }

    @Test("a VM with a dirty ring has no dirty bitmap")
    func noBitmapWithRing() throws {
        let guest = try RealModeGuest(code: [0xF4], slotFlags: .logDirtyPages, dirtyRingBytes: 4096)
        var bitmap = [UInt64](repeating: 0, count: 1)
        #expect(throws: KVMError.callFailed(call: "KVM_GET_DIRTY_LOG", errno: ENXIO)) {
            try guest.vm.dirtyLog(slot: 0, into: &bitmap)
        }
    }
}
