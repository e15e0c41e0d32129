@preconcurrency import Glibc
public import KVMKit
import PageTables

/// How a run ended normally.
public enum RunOutcome: Equatable, Sendable {
    /// The guest executed `hlt`.
    case halted
    /// The guest wrote `status` to the exit port.
    case exited(status: UInt8)

    /// The process exit status this outcome maps to.
    public var exitStatus: Int32 {
        switch self {
        case .halted: 0
        case .exited(let status): Int32(status)
        }
    }
}

/// One micro-VM: guest RAM with its page tables, a KVM VM with one vCPU set up to enter the guest, and
/// the run loop that serves its ports.
///
/// Build and run it on one thread (the vCPU is confined to the thread that created it).
public final class Machine {
    /// What it was built from.
    public var configuration: MachineConfiguration { image.configuration }
    /// RAM, tables, GDT and boot information.
    public let image: BootImage
    /// Guest RAM.
    public var memory: GuestMemory { image.memory }
    /// The guest's page tables, live in RAM.
    public var addressSpace: any AddressSpace { image.addressSpace }
    /// The boot-information block.
    public var bootInfo: BootInfo { image.bootInfo }
    /// The host KVM it runs on.
    public let host: KVMHost
    /// Console bytes, when the configuration captures them.
    public private(set) var consoleOutput: [UInt8] = []
    /// Values the guest reported with the ``HypercallOperation/report`` hypercall, in order.
    public internal(set) var reports: [[UInt64]] = []
    /// Copy-on-write faults resolved: (virtual address, original frame, new frame).
    public internal(set) var copyOnWriteResolutions: [(virtualAddress: UInt64, from: UInt64, to: UInt64)] = []
    /// Exits handled so far.
    public private(set) var exitCount = 0

    /// The VM and its vCPU, in one box the machine hands to the reaper when it goes (see ``Reaper``).
    final class KVMObjects {
        let vm: VirtualMachine
        let vcpu: VCPU
        init(vm: VirtualMachine, vcpu: VCPU) {
            self.vm = vm
            self.vcpu = vcpu
        }
    }
    /// Never `nil` while the machine lives; moved out in `deinit`.
    var kvm: KVMObjects?
    var vcpu: VCPU { kvm!.vcpu }
    var pendingConsole: [UInt8] = []

    /// Builds the machine: checks the configuration, allocates and fills guest RAM (image, page tables,
    /// GDT, boot information), creates the VM and vCPU and sets the entry state.
    ///
    /// - Parameters:
    ///   - host: an already open KVM to share; by default `configuration.kvmPath` is opened.
    ///   - probes: a probe list for the probe guest (see ``Probe``).
    /// - Throws: ``MachineError`` naming the first thing wrong.
    public init(configuration: MachineConfiguration, host: KVMHost? = nil, probes: [Probe] = []) throws(MachineError) {
        _ = try MemoryPlan(configuration)  // bad input is reported before /dev/kvm is opened
        let host = try { () throws(MachineError) -> KVMHost in
            if let host { return host }
            return try KVMHost(path: configuration.kvmPath)
        }()
        self.host = host
        let allowed: AllowedLeafSizes =
            configuration.pageSizePolicy == .automatic ? host.allowedLeafSizes(for: configuration.architecture) : []
        // What the vCPU walks: on amd64 whatever its CPUID offers, whatever the policy; on i686 4 MiB leaves
        // exactly when CR4.PSE is set, which is when they are allowed.
        let capable = host.allowedLeafSizes(for: configuration.architecture)
        image = try BootImage(
            configuration: configuration, allowedLeafSizes: allowed,
            walkableLeafSizes: configuration.architecture == .amd64 ? capable : allowed)
        try image.setProbes(probes)

        do {
            let vm = try host.system.makeVM()
            // The slot's host pointer stays valid while `memory` lives; should the mapping go before the VM
            // fd closes during teardown, no vCPU runs any more, so KVM never touches it.
            try vm.setUserMemoryRegion(
                slot: 0, guestPhysicalAddress: 0, size: configuration.memorySize, hostAddress: image.memory.hostAddress)
            let vcpu = try vm.makeVCPU(id: 0)
            try vcpu.setCPUID(host.supportedCPUID)
            kvm = KVMObjects(vm: vm, vcpu: vcpu)
        } catch {
            throw .kvmFailed(error)
        }
        try X86Boot.enter(
            vcpu, architecture: configuration.architecture, cr3: image.addressSpace.rootPhysicalAddress,
            pse: image.addressSpace.requiresPageSizeExtension, entry: configuration.effectiveEntryPoint)
    }

    /// Waits until every machine released so far has been torn down (VM and vCPU descriptors closed, guest
    /// memory unmapped): teardown happens on a background thread, off the caller's critical path.
    public static func waitForTeardown() {
        Reaper.shared.drain()
    }

    deinit {
        // VM destruction is the slowest step of a machine's life: do it on the reaper thread.
        // The box leaves the machine here, so the reaper holds its last reference.
        if let objects = kvm.take() { Reaper.shared.retire([objects]) }
    }

    // MARK: Running

    /// Runs the guest until it halts, writes the exit port, fails, or runs past the timeout.
    ///
    /// - Returns: how the guest ended normally.
    /// - Throws: ``MachineError`` for everything else, with a one-line diagnosis.
    public func run() throws(MachineError) -> RunOutcome {
        addressSpace.arenaMayBeDirty()
        let watchdog: VCPUAlarm?
        do {
            watchdog = try configuration.timeout.map { (timeout) throws(KVMError) in try VCPUAlarm(after: timeout) }
        } catch {
            throw .kvmFailed(error)
        }
        defer {
            watchdog?.cancel()
            flushConsole()
        }
        while true {
            let exit: VCPUExit
            do {
                exit = try vcpu.run()
            } catch {
                throw .kvmFailed(error)
            }
            exitCount &+= 1
            if configuration.trace { traceExit(exit) }
            switch exit {
            case .ioOut(Layout.consolePort, _, let value):
                console(UInt8(truncatingIfNeeded: value))
            case .ioOutString(Layout.consolePort, _, let bytes):
                for byte in bytes { console(byte) }
            case .ioOut(Layout.exitPort, _, let value):
                return .exited(status: UInt8(truncatingIfNeeded: value))
            case .ioOut(Layout.hypercallPort, 4, let value):
                try hypercall(recordAddress: UInt64(value))
            case .halt:
                return .halted
            case .interrupted:
                if let watchdog, watchdog.expired {
                    throw .timeout(seconds: watchdog.seconds, rip: rip(), exits: exitCount - 1)
                }
                vcpu.immediateExit = false
            case .shutdown:
                throw .tripleFault(diagnosis: diagnoseTripleFault())
            case .mmio(let address, let size, let write):
                throw .unbackedMemoryAccess(address: address, size: size, write: write, rip: rip())
            case .ioOut(let port, let size, let value):
                throw .unknownPort(port: port, size: size, value: value, rip: rip())
            case .ioOutString(let port, let size, let bytes):
                throw .unknownPort(port: port, size: size, value: bytes.first.map(UInt32.init), rip: rip())
            case .ioIn(let port, let size):
                throw .unknownPort(port: port, size: size, value: nil, rip: rip())
            case .failedEntry(let reason):
                throw .entryFailed(hardwareReason: reason, rip: rip())
            case .internalError(let suberror):
                throw .internalError(suberror: suberror, rip: rip())
            case .systemEvent, .debug, .dirtyRingFull, .unsupported:
                throw .unexpectedExit(exit.description, rip: rip())
            }
        }
    }

    /// The vCPU's RIP now (0 if it cannot be read).
    func rip() -> UInt64 { (try? vcpu.registers().rip) ?? 0 }

    func traceExit(_ exit: VCPUExit) {
        writeStandardError("[exit \(exitCount)] \(exit) (RIP \(hex(rip())))\n")
    }

    // MARK: Console

    func console(_ byte: UInt8) {
        switch configuration.console {
        case .discard: return
        case .capture: consoleOutput.append(byte)
        case .standardOutput:
            pendingConsole.append(byte)
            if byte == 0x0A || pendingConsole.count >= 4096 { flushConsole() }
        }
    }

    func flushConsole() {
        guard !pendingConsole.isEmpty else { return }
        writeAll(fd: STDOUT_FILENO, pendingConsole)
        pendingConsole.removeAll(keepingCapacity: true)
    }

    // MARK: Diagnostics

    /// `RIP 0x... (-> 0x..., r-x, 4 KiB leaf), CR2 0x... (not mapped), CR3 0x...`, with a hint for page 0.
    func diagnoseTripleFault() -> String {
        let registers = try? vcpu.registers()
        let special = try? vcpu.specialRegisters()
        let rip = registers?.rip ?? 0
        var text = "RIP \(hex(rip)) \(describeTranslation(of: rip))"
        if let special {
            text += ", CR2 \(hex(special.cr2)) \(describeTranslation(of: special.cr2))"
            text += ", CR3 \(hex(special.cr3))"
            if special.cr3 & ~0xFFF != addressSpace.rootPhysicalAddress {
                text +=
                    " (the guest switched CR3 away from the host's tables at \(hex(addressSpace.rootPhysicalAddress)); the translations above are the host's)"
            }
            if special.cr2 < 0x1000 && special.cr2 != 0 || special.cr2 == 0 && rip < 0x1000 {
                text += " (page 0 is never mapped: a null pointer?)"
            } else if case .copyOnWrite? = (try? addressSpace.lookup(special.cr2))??.kind {
                text +=
                    " (CR2 is a copy-on-write page: a write to it needs the guest's #PF handler to ask the host to resolve it)"
            }
        }
        return text
    }

    /// `(-> 0x201000, read-only, 4 KiB leaf)` or `(not mapped)`, from the engine's view of the live tables.
    public func describeTranslation(of virtualAddress: UInt64) -> String {
        do {
            guard let t = try addressSpace.lookup(virtualAddress) else { return "(not mapped)" }
            let cow = { if case .copyOnWrite = t.kind { return ", copy-on-write" } else { return "" } }()
            return
                "(-> \(hex(t.physicalAddress)), \(t.kind.isWritable ? "writable" : "read-only")\(t.kind.isExecutable ? "" : ", no-execute")\(cow), \(t.leafSize) leaf)"
        } catch .outsideVirtualSpace {
            return "(non-canonical address)"
        } catch {
            return "(tables unreadable: \(error))"
        }
    }

    /// The address space now, as ``AddressSpace/dump()`` prints it.
    public func dumpTables() -> String {
        do { return try addressSpace.dump() } catch { return "tables unreadable: \(error)\n" }
    }

    /// The vCPU's own translation of `virtualAddress` (`KVM_TRANSLATE`).
    public func vcpuTranslate(_ virtualAddress: UInt64) throws(MachineError) -> KVMKit.Translation {
        do { return try vcpu.translate(virtualAddress) } catch { throw .kvmFailed(error) }
    }

    /// The vCPU's registers (for tests and diagnostics).
    public func registers() throws(MachineError) -> Registers {
        do { return try vcpu.registers() } catch { throw .kvmFailed(error) }
    }
}

/// Writes all of `bytes` to `fd`, retrying short writes and EINTR.
func writeAll(fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            // SAFETY: the pointer and length stay inside `buffer`.
            let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}

/// Writes `text` to standard error.
public func writeStandardError(_ text: String) {
    writeAll(fd: STDERR_FILENO, Array(text.utf8))
}
