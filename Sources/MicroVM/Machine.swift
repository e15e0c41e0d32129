@preconcurrency import Glibc
public import KVMKit
import PageTables
import Synchronization

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
    /// Console bytes, when the configuration captures them (the first `limit` of them).
    public private(set) var consoleOutput: [UInt8] = []
    /// Console bytes captured beyond the capture limit, counted and dropped.
    public private(set) var consoleBytesDropped = 0
    /// Most console bytes held before they go to the sink: a newline or this many bytes flush them.
    public static let consoleBufferLimit = 4096
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
    /// Stops the vCPU from any thread (see ``interrupter``).
    public let interrupter: Interrupter

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
            interrupter = Interrupter(kicker: vcpu.makeKicker())
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

    /// Runs the guest until it halts, writes the exit port, fails, runs past the timeout, or is interrupted.
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
        defer { watchdog?.cancel() }
        let outcome: RunOutcome
        do {
            outcome = try runLoop(watchdog: watchdog)
        } catch {
            // Whatever ended the run, what the guest printed before it still goes out; a sink that fails
            // now cannot hide the first error.
            try? flushConsole(watchdog: watchdog)
            throw error
        }
        try flushConsole(watchdog: watchdog)
        return outcome
    }

    func runLoop(watchdog: VCPUAlarm?) throws(MachineError) -> RunOutcome {
        while true {
            if interrupter.isRequested { throw .interrupted(rip: rip(), exits: exitCount) }
            let exit: VCPUExit
            do {
                exit = try vcpu.run()
            } catch {
                throw .kvmFailed(error)
            }
            exitCount &+= 1
            if let trace = configuration.trace { trace("[exit \(exitCount)] \(exit) (RIP \(hex(rip())))") }
            switch exit {
            case .ioOut(Layout.consolePort, _, let value):
                try console(UInt8(truncatingIfNeeded: value), watchdog: watchdog)
            case .ioOutString(Layout.consolePort, _, let bytes):
                for byte in bytes { try console(byte, watchdog: watchdog) }
            case .ioOut(Layout.exitPort, _, let value):
                return .exited(status: UInt8(truncatingIfNeeded: value))
            case .ioOut(Layout.hypercallPort, 4, let value):
                try hypercall(recordAddress: UInt64(value))
            case .halt:
                return .halted
            case .interrupted:
                exitCount &-= 1  // a kick is not the guest's exit
                try checkStop(watchdog: watchdog)
                vcpu.immediateExit = false
            case .shutdown:
                throw .tripleFault(diagnosis: diagnoseTripleFault())
            case .mmio(let address, let size, let write):
                throw .unbackedMemoryAccess(address: address, size: size, write: write, rip: rip())
            case .ioOut(let port, let size, let value):
                throw .unknownPort(port: port, size: size, value: value, rip: rip())
            case .ioOutString(let port, let size, let bytes):
                throw .unknownPortString(
                    port: port, size: size, count: bytes.count / max(size, 1), input: false, rip: rip())
            case .ioIn(let port, let size):
                throw .unknownPort(port: port, size: size, value: nil, rip: rip())
            case .ioInString(let port, let size, let count):
                throw .unknownPortString(port: port, size: size, count: count, input: true, rip: rip())
            case .failedEntry(let reason):
                throw .entryFailed(hardwareReason: reason, rip: rip())
            case .emulationFailure(let fetched):
                // Eight bytes say which instruction it is; x86 instructions have no fixed length to cut at.
                let rip = rip()
                let bytes = fetched.map { Array($0.prefix(8)) } ?? bytes(at: rip, count: 8)
                throw .emulationFailed(rip: rip, bytes: bytes.flatMap { $0.isEmpty ? nil : $0 })
            case .internalError(let suberror):
                throw .internalError(suberror: suberror, rip: rip())
            case .systemEvent, .debug, .dirtyRingFull, .unsupported:
                throw .unexpectedExit(exit.description, rip: rip())
            }
        }
    }

    /// Throws the timeout or interruption that stopped the vCPU, if one did; returns for a stray signal.
    func checkStop(watchdog: VCPUAlarm?) throws(MachineError) {
        if let watchdog, watchdog.expired {
            throw .timeout(seconds: watchdog.seconds, rip: rip(), exits: exitCount)
        }
        if interrupter.isRequested { throw .interrupted(rip: rip(), exits: exitCount) }
    }

    /// The vCPU's RIP now (0 if it cannot be read).
    func rip() -> UInt64 { (try? vcpu.registers().rip) ?? 0 }

    // MARK: Console

    func console(_ byte: UInt8, watchdog: VCPUAlarm?) throws(MachineError) {
        switch configuration.console {
        case .discard: return
        case .capture(let limit):
            if consoleOutput.count < limit { consoleOutput.append(byte) } else { consoleBytesDropped += 1 }
        case .sink:
            pendingConsole.append(byte)
            if byte == 0x0A || pendingConsole.count >= Self.consoleBufferLimit { try flushConsole(watchdog: watchdog) }
        }
    }

    /// Hands the pending console bytes to the sink. A sink error ends the run; when the sink gave up because
    /// the timeout passed or the machine was interrupted while it waited, that is what is reported.
    func flushConsole(watchdog: VCPUAlarm?) throws(MachineError) {
        guard case .sink(let sink) = configuration.console, !pendingConsole.isEmpty else { return }
        let bytes = pendingConsole
        pendingConsole.removeAll(keepingCapacity: true)
        do {
            try sink(bytes)
        } catch {
            try checkStop(watchdog: watchdog)
            throw .consoleFailed(String(describing: error))
        }
    }

    /// Up to `count` bytes at virtual address `address`, read through the tables in CR3; fewer where the
    /// pages are not mapped or not in RAM, `nil` when not even the first byte is.
    func bytes(at address: UInt64, count: Int) -> [UInt8]? {
        let space = addressSpaceInCR3()
        var bytes: [UInt8] = []
        var address = address
        while bytes.count < count {
            guard let translation = try? space.lookup(address),
                let byte = memory.read(at: translation.physicalAddress, count: 1)
            else { break }
            bytes += byte
            address &+= 1
        }
        return bytes.isEmpty ? nil : bytes
    }

    // MARK: Diagnostics

    /// The tables the vCPU walks now: the root in CR3, which is the host's unless the guest loaded its own.
    func addressSpaceInCR3() -> any AddressSpace {
        guard let cr3 = try? vcpu.specialRegisters().cr3 else { return addressSpace }
        let host = addressSpace.rootPhysicalAddress
        let root = addressSpace.view(root: cr3)
        return root.rootPhysicalAddress == host ? addressSpace : root
    }

    /// `RIP 0x... (-> 0x..., r-x, 4 KiB leaf), CR2 0x... (not mapped), CR3 0x...`, with a hint for page 0.
    /// Translations are read from the tables in CR3, the guest's own if it built and loaded them.
    func diagnoseTripleFault() -> String {
        let registers = try? vcpu.registers()
        let special = try? vcpu.specialRegisters()
        let rip = registers?.rip ?? 0
        let space = addressSpaceInCR3()
        var text = "RIP \(hex(rip)) \(describeTranslation(of: rip, in: space))"
        if let special {
            text += ", CR2 \(hex(special.cr2)) \(describeTranslation(of: special.cr2, in: space))"
            text += ", CR3 \(hex(special.cr3))"
            if space !== addressSpace {
                text += " (the guest's own tables: the host's are at \(hex(addressSpace.rootPhysicalAddress)))"
            }
            if special.cr2 < 0x1000 && special.cr2 != 0 || special.cr2 == 0 && rip < 0x1000 {
                text += " (page 0 is never mapped: a null pointer?)"
            } else if case .copyOnWrite? = (try? space.lookup(special.cr2))??.kind {
                text +=
                    " (CR2 is a copy-on-write page: a write to it needs the guest's #PF handler to ask the host to resolve it)"
            }
        }
        return text
    }

    /// `(-> 0x201000, read-only, 4 KiB leaf)` or `(not mapped)`, from the engine's view of the tables in
    /// CR3 (or of `space`).
    public func describeTranslation(of virtualAddress: UInt64, in space: (any AddressSpace)? = nil) -> String {
        let space = space ?? addressSpaceInCR3()
        do {
            guard let t = try space.lookup(virtualAddress) else { return "(not mapped)" }
            let cow = { if case .copyOnWrite = t.kind { return ", copy-on-write" } else { return "" } }()
            return
                "(-> \(hex(t.physicalAddress)), \(t.kind.isWritable ? "writable" : "read-only")\(t.kind.isExecutable ? "" : ", no-execute")\(cow), \(t.leafSize) leaf)"
        } catch .outsideVirtualSpace {
            return "(non-canonical address)"
        } catch {
            return "(tables unreadable: \(error))"
        }
    }

    /// The address space in CR3 now, as ``AddressSpace/dump(lineLimit:tableLimit:)`` prints it (bounded),
    /// headed by a line naming the guest's own root when it loaded one.
    public func dumpTables() -> String {
        let space = addressSpaceInCR3()
        let header = space === addressSpace ? "" : "(the guest's own tables at \(hex(space.rootPhysicalAddress)))\n"
        return header + space.dump()
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

/// Stops a running machine from any thread: the timeout's mechanism, offered to the embedder.
///
/// ``interrupt()`` marks the machine interrupted and kicks its vCPU out of `KVM_RUN` (or makes the next
/// entry return at once); ``Machine/run()`` then ends with ``MachineError/interrupted(rip:exits:)``. A
/// console sink blocked in a system call on the vCPU's thread sees that call fail with EINTR, and should
/// give up when ``isRequested``.
public struct Interrupter: Sendable {
    let kicker: VCPUKicker
    let state = RequestState()

    final class RequestState: Sendable {
        let requested = Atomic<Bool>(false)
    }

    /// Whether ``interrupt()`` has been called.
    public var isRequested: Bool { state.requested.load(ordering: .acquiring) }

    /// Interrupts the machine's current or next run. Safe from any thread, any number of times; not from a
    /// signal handler (it takes a lock).
    public func interrupt() {
        state.requested.store(true, ordering: .releasing)
        kicker.kick()
    }
}
