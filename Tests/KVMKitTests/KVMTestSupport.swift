import Glibc
import KVMKit
import Testing

/// Whether this host has a usable /dev/kvm: the suites that run guests run exactly when it does.
let kvmUsable = KVMSystem.isUsable(path: "/dev/kvm")
let kvmReason: Comment = "needs a readable and writable /dev/kvm"

/// `value` in lowercase hexadecimal with a `0x` prefix: the one hex formatter of this test target.
func hex(_ value: some BinaryInteger) -> String { "0x" + String(value, radix: 16) }

/// A real-mode guest: 64 KiB of anonymous memory at guest-physical 0, one vCPU with CS base 0 and
/// IP at `entry`, and `code` copied there. Built and run on the calling thread.
final class RealModeGuest {
    static let memorySize = 0x1_0000
    let system: KVMSystem
    let vm: VirtualMachine
    let vcpu: VCPU
    let memory: UnsafeMutableRawPointer

    /// - Parameters:
    ///   - slotFlags: the memory slot's flags (dirty logging, read-only).
    ///   - dirtyRingBytes: if nonzero, the VM gets a dirty ring of this size before the vCPU is made.
    ///   - manualDirtyLogProtection: enable KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 before the slot is made.
    init(
        code: [UInt8], entry: UInt64 = 0x1000, data: [UInt64: [UInt8]] = [:],
        slotFlags: VirtualMachine.MemoryRegionFlags = [], dirtyRingBytes: Int = 0,
        manualDirtyLogProtection: Bool = false
    ) throws {
        system = try KVMSystem()
        vm = try system.makeVM()
        if dirtyRingBytes > 0 { try vm.enableDirtyRing(byteCount: dirtyRingBytes) }
        if manualDirtyLogProtection { try vm.enableManualDirtyLogProtection() }
        // SAFETY: a fresh private anonymous mapping, read-write, zero-filled by the kernel; unmapped in
        // deinit only after the memory slot that refers to it has been deleted.
        let address = mmap(nil, Self.memorySize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let address, address != MAP_FAILED else { throw KVMError.callFailed(call: "mmap", errno: errno) }
        memory = address
        vcpu = try vm.makeVCPU()
        try vm.setUserMemoryRegion(
            slot: 0, guestPhysicalAddress: 0, size: UInt64(Self.memorySize), hostAddress: memory, flags: slotFlags)
        write(code, at: entry)
        for (address, bytes) in data { write(bytes, at: address) }

        try vcpu.setCPUID(system.supportedCPUID())
        var special = try vcpu.specialRegisters()
        special.cs.base = 0
        special.cs.selector = 0
        try vcpu.setSpecialRegisters(special)
        var registers = Registers()
        registers.rip = entry
        try vcpu.setRegisters(registers)
    }

    deinit {
        // Delete the slot first, so the guest can never see the pages once they are unmapped.
        var dummy: UInt8 = 0
        try? withUnsafeMutablePointer(to: &dummy) { pointer in
            try vm.setUserMemoryRegion(slot: 0, guestPhysicalAddress: 0, size: 0, hostAddress: pointer)
        }
        // SAFETY: `memory` is the mapping made in init, no longer referenced by any slot.
        munmap(memory, Self.memorySize)
    }

    /// Copies `bytes` into guest memory at guest-physical `address`.
    func write(_ bytes: [UInt8], at address: UInt64) {
        precondition(Int(address) + bytes.count <= Self.memorySize)
        // SAFETY: the destination range lies inside the mapping (checked above).
        memory.advanced(by: Int(address)).copyMemory(from: bytes, byteCount: bytes.count)
    }

    /// Points the vCPU at `rip` again (real mode, CS base 0), as at creation, with `KVM_SET_REGS`.
    func restart(at rip: UInt64 = 0x1000) throws {
        var registers = Registers()
        registers.rip = rip
        try vcpu.setRegisters(registers)
    }

    /// Runs until a halt, a shutdown or a failure, or `limit` exits; returns every exit in order.
    func runToHalt(limit: Int = 16) throws -> [VCPUExit] {
        var exits: [VCPUExit] = []
        while exits.count < limit {
            let exit = try vcpu.run()
            exits.append(exit)
            switch exit {
            case .ioOut, .ioOutString: continue
            default: return exits
            }
        }
        return exits
    }
}

extension RealModeGuest {
    /// Whether /dev/kvm is served by kvm_pvm, which emulates every guest instruction and lacks a few
    /// debug features (INT3 and data watchpoints do not stop the vCPU).
    static var isPVM: Bool { access("/sys/module/kvm_pvm", F_OK) == 0 }

    /// Switches the vCPU to 64-bit long mode at `entry`: the first 2 MiB identity-mapped by one 2 MiB leaf
    /// with A and D pre-set (tables at 0x8000-0xAFFF), flat 64-bit code and data segments.
    func enterLongMode(entry: UInt64 = 0x1000) throws {
        func entry64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        write(entry64(0x9000 | 0x23), at: 0x8000)  // PML4[0]: P | RW | A
        write(entry64(0xA000 | 0x23), at: 0x9000)  // PDPT[0]: P | RW | A
        write(entry64(0x0 | 0xE3), at: 0xA000)  // PD[0]: P | RW | A | D | PS, 2 MiB at 0
        var special = try vcpu.specialRegisters()
        special.cs = Segment(
            base: 0, limit: 0xFFFF_FFFF, selector: 8, type: 11, present: true, s: true, l: true, g: true)
        let data = Segment(
            base: 0, limit: 0xFFFF_FFFF, selector: 16, type: 3, present: true, db: true, s: true, g: true)
        special.ds = data; special.es = data; special.ss = data; special.fs = data; special.gs = data
        special.cr3 = 0x8000
        special.cr4 = [.pae, .osfxsr, .osxmmexcpt]
        special.cr0 = [.protectionEnable, .monitorCoprocessor, .extensionType, .numericError, .writeProtect, .paging]
        special.efer = [.lme, .lma]
        try vcpu.setSpecialRegisters(special)
        try restart(at: entry)
    }
}

/// Starts `body` on a new detached POSIX thread (not a Swift concurrency task, so it cannot be starved
/// by tests blocking the cooperative pool in KVM_RUN) and returns its id for `pthread_join`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { context in
            // SAFETY: `context` is the retained Box passed below; this takes back that single +1.
            let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
            box.body()
            return nil
        }, context)
    precondition(result == 0, "pthread_create failed")
    return thread
}
