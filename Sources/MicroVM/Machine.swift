public import KVMKit
import PageTables
import Synchronization

/// How a run ended normally.
public enum RunOutcome: Equatable, Sendable {
    /// The guest executed `hlt`.
    case halted
    /// The guest wrote `status` to the exit port.
    case exited(status: UInt8)
    /// The guest asked to be snapshotted here (hypercall 4): take ``Machine/snapshot()`` now; a machine
    /// restored from it, or this one run on, continues after the request.
    case snapshotRequested
    /// The guest announced its exported functions and waits for calls (hypercall 6): use
    /// ``Machine/call(_:_:)-(String,CallValue...)``, not ``Machine/run()``, from here.
    case ready
    /// A guest function returned (port 0x511). Only ``Machine/call(_:_:)-(GuestFunction,[CallValue])``
    /// sees it.
    case returned
    /// The guest stopped for a debugger: a single step, a breakpoint, or an interruption. Only a machine in
    /// debug mode (``Machine/setDebugSettings(_:)``) returns it; the guest runs on with the next ``Machine/run()``.
    case debugStop(DebugStop)
}

/// One micro-VM: guest RAM with its page tables, a KVM VM with one vCPU set up to enter the guest, the
/// devices on its buses, and the run loop that serves them.
///
/// A machine is confined to one thread: build it, run it and drop it on the thread that runs its vCPU
/// (``AsyncMachine`` gives it a thread of its own for `async` code). Only its ``interrupter`` may be used
/// from other threads.
public final class Machine {
    /// What it was built from.
    public var configuration: MachineConfiguration { image.configuration }
    /// RAM, tables, GDT and boot information.
    public let image: BootImage
    /// Guest RAM.
    public var memory: GuestMemory { image.memory }
    /// The page tables the host built, live in RAM.
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
    @_spi(Testing) public internal(set) var reports: [[UInt64]] = []
    /// Copy-on-write faults resolved: (virtual address, original frame, new frame).
    public internal(set) var copyOnWriteResolutions: [(virtualAddress: UInt64, from: UInt64, to: UInt64)] = []
    /// Exits the guest made so far (kicks from a timeout or an interrupt are not counted).
    public internal(set) var exitCount = 0
    /// Stops the vCPU from any thread.
    public let interrupter: Interrupter

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
    var devices = DeviceBus()
    var pendingConsole: [UInt8] = []
    /// The timer that ends runs past their timeout (and ticks for a resettable machine); made at the first
    /// run that needs it, armed for each run.
    var watchdog: VCPUAlarm?
    /// Why the machine cannot run until it is reset, if it cannot.
    var poisoned: String?
    /// The roots of the address spaces the machine knows (the host's boot root first, then those the host
    /// built or the guest registered), which a snapshot keeps.
    public internal(set) var roots: [UInt64] = []
    /// The snapshot ``reset(allState:)`` goes back to, if any.
    public internal(set) var resetPoint: Snapshot?
    /// Pages the guest wrote since the reset point, as collected from the dirty ring so far.
    var guestWrites: HostWriteLog?
    /// The dirty ring lost entries: the next reset must rebuild the VM.
    var dirtyRingLost = false
    /// What the guest exports for calls, once it is ready.
    var callInterface: CallInterface?
    /// Whether the guest is waiting for a call (it made the ready hypercall or returned from one).
    var waitingForCall = false
    /// Host functions the guest may call, by name.
    var hostFunctions: [String: HostFunction] = [:]
    /// What stops the guest for a debugger, when the machine is in debug mode (Machine+Debugging.swift).
    public internal(set) var debugSettings: DebugSettings?

    /// Builds the machine: checks the configuration, allocates and fills guest RAM (image, page tables,
    /// GDT, boot information), creates the VM and vCPU, sets the entry state and attaches the built-in
    /// devices (console, exit and hypercall ports).
    ///
    /// - Parameters:
    ///   - configuration: the guest image, its memory and mappings, and how the machine runs it.
    ///   - host: an already open KVM to share; by default `configuration.kvmPath` is opened.
    /// - Throws: ``MachineError`` naming the first thing wrong.
    public convenience init(configuration: MachineConfiguration, host: KVMHost? = nil) throws(MachineError) {
        try self.init(configuration: configuration, host: host, probes: [])
    }

    /// Builds the machine with a probe list for the probe guest (see ``Probe``).
    @_spi(Testing) public convenience init(
        configuration: MachineConfiguration, host: KVMHost? = nil, probes: [Probe]
    ) throws(MachineError) {
        _ = try MemoryPlan(configuration)  // bad input is reported before /dev/kvm is opened
        let host = try { () throws(MachineError) -> KVMHost in
            if let host { return host }
            return try KVMHost(path: configuration.kvmPath)
        }()
        let allowed: AllowedLeafSizes =
            configuration.pageSizePolicy == .automatic ? host.allowedLeafSizes(for: configuration.architecture) : []
        // What the vCPU walks: on amd64 whatever its CPUID offers, whatever the policy; on i686 4 MiB leaves
        // exactly when CR4.PSE is set, which is when they are allowed.
        let capable = host.allowedLeafSizes(for: configuration.architecture)
        let image = try BootImage(
            configuration: configuration, allowedLeafSizes: allowed,
            walkableLeafSizes: configuration.architecture == .amd64 ? capable : allowed)
        try image.setProbes(probes)
        try self.init(host: host, image: image, resettable: configuration.resettable) { (vcpu) throws(MachineError) in
            try X86Boot.enter(
                vcpu, architecture: configuration.architecture, cr3: image.addressSpace.rootPhysicalAddress,
                pse: image.addressSpace.requiresPageSizeExtension, entry: configuration.effectiveEntryPoint)
        }
    }

    /// Creates the VM and vCPU over `image`'s memory, then lets `enter` set the vCPU's state.
    init(
        host: KVMHost, image: BootImage, resettable: Bool, enter: (VCPU) throws(MachineError) -> Void
    ) throws(MachineError) {
        self.host = host
        self.image = image
        do {
            let objects = try Self.makeKVMObjects(
                host: host, memory: image.memory, configuration: image.configuration, resettable: resettable)
            kvm = objects
            interrupter = Interrupter(kicker: objects.vcpu.makeKicker())
        } catch {
            throw .kvmFailed(error)
        }
        try enter(vcpu)
        roots = [image.addressSpace.rootPhysicalAddress]
        // KVM leaves the registers in kvm_run after every exit, where the run loop reads RIP and CR3 without
        // an ioctl, and a reset stages the snapshot's.
        vcpu.syncedRegisterSets = .all
        if resettable { guestWrites = HostWriteLog(pages: Int(image.memory.size >> 12)) }
        attachBuiltInDevices()
    }

    /// A VM with RAM as slot 0 and one vCPU with the host's CPUID; with a dirty ring and dirty logging on
    /// the slot when the machine must be resettable.
    static func makeKVMObjects(
        host: KVMHost, memory: GuestMemory, configuration: MachineConfiguration, resettable: Bool
    ) throws(KVMError) -> KVMObjects {
        let vm = try host.system.makeVM()
        if resettable {
            let largest = max(4096, vm.extension(.dirtyLogRingAcqRel), vm.extension(.dirtyLogRing))
            var bytes = 4096
            while bytes * 2 <= min(largest, max(configuration.dirtyRingEntries, 256) * 16) { bytes *= 2 }
            try vm.enableDirtyRing(byteCount: bytes)
        }
        // The slot's host pointer stays valid while `memory` lives; should the mapping go before the VM fd
        // closes during teardown, no vCPU runs any more, so KVM never touches it.
        unsafe try vm.setUserMemoryRegion(
            slot: 0, guestPhysicalAddress: 0, size: memory.size, hostAddress: memory.hostAddress,
            flags: resettable ? [.logDirtyPages] : [])
        let vcpu = try vm.makeVCPU(id: 0)
        try vcpu.setCPUID(host.supportedCPUID)
        return KVMObjects(vm: vm, vcpu: vcpu)
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

    // MARK: Devices

    func attachBuiltInDevices() {
        // The built-in ports never overlap each other on a fresh bus.
        try! devices.attach(ConsolePort(), ports: Layout.consolePort...Layout.consolePort)
        try! devices.attach(ExitPort(), ports: Layout.exitPort...Layout.exitPort)
        try! devices.attach(HypercallPort(), ports: Layout.hypercallPort...Layout.hypercallPort)
        try! devices.attach(ReturnPort(), ports: Self.returnPort...Self.returnPort)
    }

    /// Attaches `device` to the ports in `ports`: the guest's port I/O there reaches it.
    /// - Throws: ``DeviceError/portsInUse(_:)`` when a device (a built-in one included) already serves
    ///   one of them; ``detachDevice(port:)`` frees a port first.
    public func attach(_ device: some PortDevice, ports: ClosedRange<UInt16>) throws(DeviceError) {
        try devices.attach(device, ports: ports)
    }

    /// Attaches `device` to the guest-physical addresses in `addresses`, which must lie above RAM.
    /// - Throws: ``DeviceError`` when the range overlaps RAM or another device.
    public func attach(_ device: some MMIODevice, addresses: Range<UInt64>) throws(DeviceError) {
        try devices.attach(device, addresses: addresses, memorySize: configuration.memorySize)
    }

    /// Detaches the device serving `port` (a built-in one too) and returns it, or `nil` if none does.
    @discardableResult public func detachDevice(port: UInt16) -> (any PortDevice)? { devices.detach(port: port) }

    /// Detaches the MMIO device serving `address` and returns it, or `nil` if none does.
    @discardableResult public func detachDevice(address: UInt64) -> (any MMIODevice)? {
        devices.detach(address: address)
    }

    // MARK: Running

    /// Runs the guest until it halts, writes the exit port, fails, runs past the timeout, or is interrupted.
    ///
    /// - Returns: how the guest ended normally.
    /// - Throws: ``RunError`` for everything else; after a fault, a timeout or an interruption the machine
    ///   refuses to run again (``RunError/needsReset(after:)``) until it is reset.
    public func run() throws(RunError) -> RunOutcome {
        if let poisoned { throw .needsReset(after: poisoned) }
        addressSpace.arenaMayBeDirty()
        do {
            try followHostRoot()
        } catch {
            throw .kvmFailed(error)
        }
        do {
            let tick = guestWrites == nil ? nil : configuration.resetTick
            if configuration.timeout != nil || tick != nil {
                if watchdog == nil { watchdog = try VCPUAlarm() }
                try watchdog!.arm(after: configuration.timeout, tick: tick)
            }
        } catch {
            throw .kvmFailed(error)
        }
        defer {
            watchdog?.cancel()
            // Short runs (calls) never meet a tick: collect the ring once it is half full, so it never fills
            // across runs (on an emulating KVM every guest write takes an entry).
            if guestWrites != nil, vcpu.dirtyRingHolds(atLeast: vcpu.dirtyRingCapacity / 2) { collectGuestWrites() }
        }
        let outcome: RunOutcome
        do {
            outcome = try runLoop()
        } catch {
            // What the guest printed before the end still goes out; a sink that fails now cannot hide the
            // first error.
            try? flushConsole()
            poisoned = error.description
            throw error
        }
        try flushConsole()
        return outcome
    }

    func runLoop() throws(RunError) -> RunOutcome {
        while true {
            if interrupter.isRequested {
                if let stop = debuggerInterruption() { return stop }
                throw .interrupted(rip: rip(), exits: exitCount)
            }
            let exit: VCPUExit
            do {
                exit = try vcpu.run()
            } catch {
                throw .kvmFailed(error)
            }
            if case .interrupted = exit {
                // A kick is not the guest's exit: the timeout, an interruption, the tick that collects the
                // dirty ring, or a stray signal.
                collectGuestWrites()
                if debugSettings != nil {
                    try checkTimeout()
                    if let stop = debuggerInterruption() { return stop }
                }
                try checkStop()
                vcpu.immediateExit = false
                continue
            }
            exitCount &+= 1
            if let trace = configuration.trace { trace("[exit \(exitCount)] \(exit) (RIP \(hex(rip())))") }
            if case .stop(let outcome) = try handle(exit) { return outcome }
        }
    }

    /// Serves one exit: a device access, or the end of the run.
    func handle(_ exit: VCPUExit) throws(RunError) -> DeviceResponse {
        switch exit {
        case .ioOut(let port, let size, let value):
            guard let device = devices.device(port: port) else {
                throw .fault(fault(.unknownPort(port: port, size: size, writeValue: value, count: 1)))
            }
            return try serve { () throws in try device.write(port: port, size: size, value: value, machine: self) }
        case .ioOutString(let port, let size, let bytes):
            let count = bytes.count / max(size, 1)
            let values = (0..<count).map { unit in
                bytes[(unit * size)..<(unit * size + size)].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            }
            guard let device = devices.device(port: port) else {
                throw .fault(fault(.unknownPort(port: port, size: size, writeValue: values.first, count: count)))
            }
            return try serveString(count: count) { () throws in
                for value in values {
                    let response = try device.write(port: port, size: size, value: value, machine: self)
                    if case .stop = response { return response }
                }
                return .resume
            }
        case .ioIn(let port, let size):
            guard let device = devices.device(port: port) else {
                throw .fault(fault(.unknownPort(port: port, size: size, writeValue: nil, count: 1)))
            }
            let value = try serve { () throws in try device.read(port: port, size: size, machine: self) }
            vcpu.completeIORead(value)
            return .resume
        case .ioInString(let port, let size, let count):
            guard let device = devices.device(port: port) else {
                throw .fault(fault(.unknownPort(port: port, size: size, writeValue: nil, count: count)))
            }
            let bytes = try serveString(count: count) { () throws in
                var bytes: [UInt8] = []
                bytes.reserveCapacity(count * size)
                for _ in 0..<count {
                    let value = try device.read(port: port, size: size, machine: self)
                    for byte in 0..<size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(byte)))) }
                }
                return bytes
            }
            vcpu.completeIOReadString(bytes)
            return .resume
        case .mmio(let address, let size, let write):
            guard let device = devices.device(address: address) else {
                throw .fault(fault(.unbackedMemory(address: address, size: size, writeValue: write)))
            }
            if let write {
                return try serve { () throws in
                    try device.write(address: address, size: size, value: write, machine: self)
                }
            }
            let value = try serve { () throws in try device.read(address: address, size: size, machine: self) }
            vcpu.completeMMIORead(value)
            return .resume
        case .halt:
            return .stop(.halted)
        case .shutdown:
            throw .fault(tripleFault())
        case .failedEntry(let reason):
            throw .fault(fault(.entryFailed(hardwareReason: reason)))
        case .emulationFailure(let fetched):
            let rip = rip()
            // A KVM that emulates guest code (kvm_pvm) fails on the INT3 a debugger planted instead of
            // reporting a debug exit: at a planted address, that failure is the breakpoint.
            if let settings = debugSettings, settings.softwareBreakpoints.contains(rip) {
                return .stop(.debugStop(.softwareBreakpoint(pc: rip)))
            }
            // Eight bytes say which instruction it is; x86 instructions have no fixed length to cut at.
            let bytes = fetched.map { Array($0.prefix(8)) } ?? bytes(at: rip, count: 8)
            throw .fault(fault(.emulationFailure(bytes: bytes.flatMap { $0.isEmpty ? nil : $0 }), rip: rip))
        case .internalError(let suberror):
            throw .fault(fault(.internalError(suberror: suberror)))
        case .dirtyRingFull:
            // The guest wrote more between two exits than the ring holds: what it wrote is no longer known.
            dirtyRingLost = true
            throw .dirtyTrackingLost
        case .debug(let stop) where debugSettings != nil:
            return .stop(.debugStop(DebugStop(stop)))
        case .systemEvent, .debug, .unsupported, .interrupted:
            throw .fault(fault(.unexpectedExit(exit)))
        }
    }

    /// Runs a device callback, turning what it throws into a ``RunError``: a ``GuestFault`` or a ``RunError``
    /// as it is, anything else as ``RunError/deviceFailed(_:)``.
    @inline(__always)
    func serve<T>(_ body: () throws -> T) throws(RunError) -> T {
        do {
            return try body()
        } catch let error as RunError {
            throw error
        } catch let fault as GuestFault {
            throw .fault(fault)
        } catch {
            throw .deviceFailed(String(describing: error))
        }
    }

    /// ``serve(_:)`` for the units of a `REP OUTS` / `REP INS`: a device that does not serve the direction
    /// names the whole string in its fault.
    func serveString<T>(count: Int, _ body: () throws -> T) throws(RunError) -> T {
        do {
            return try serve(body)
        } catch .fault(var fault) {
            if case .unknownPort(let port, let size, let value, 1) = fault.kind {
                fault.kind = .unknownPort(port: port, size: size, writeValue: value, count: count)
            }
            throw .fault(fault)
        }
    }

    /// Throws the timeout or interruption that stopped the vCPU, if one did; returns for a stray signal.
    func checkStop() throws(RunError) {
        try checkTimeout()
        if interrupter.isRequested { throw .interrupted(rip: rip(), exits: exitCount) }
    }

    /// Throws the timeout if it has passed.
    func checkTimeout() throws(RunError) {
        if let watchdog, watchdog.armed, watchdog.expired {
            throw .timeout(seconds: watchdog.seconds, rip: rip(), exits: exitCount)
        }
    }

    /// The vCPU's RIP now, from kvm_run (synced after every exit, or staged).
    func rip() -> UInt64 { vcpu.syncedRegisters().rip }

    // MARK: Console

    func console(_ byte: UInt8) throws(RunError) {
        switch configuration.console {
        case .discard: return
        case .capture(let limit):
            if consoleOutput.count < limit { consoleOutput.append(byte) } else { consoleBytesDropped += 1 }
        case .sink:
            pendingConsole.append(byte)
            if byte == 0x0A || pendingConsole.count >= Self.consoleBufferLimit { try flushConsole() }
        }
    }

    /// Hands the pending console bytes to the sink. A sink error ends the run; when the sink gave up because
    /// the timeout passed or the machine was interrupted while it waited, that is what is reported.
    func flushConsole() throws(RunError) {
        guard case .sink(let sink) = configuration.console, !pendingConsole.isEmpty else { return }
        let bytes = pendingConsole
        pendingConsole.removeAll(keepingCapacity: true)
        do {
            try sink(bytes)
        } catch {
            try checkStop()
            throw .consoleFailed(String(describing: error))
        }
    }

    // MARK: Faults and diagnostics

    /// A fault of `kind` at the vCPU's RIP (or `rip`), with CR3 and the translation of RIP through the
    /// tables in CR3: what a device throws when the guest misuses it.
    public func fault(_ kind: GuestFault.Kind, rip: UInt64? = nil) -> GuestFault {
        GuestFault(kind, rip: rip ?? self.rip(), cr3: vcpu.syncedSpecialRegisters().cr3)
    }

    /// The triple fault now: RIP, CR2 and CR3 with their translations through the tables in CR3.
    func tripleFault() -> GuestFault {
        let rip = self.rip()
        let special: SpecialRegisters? = vcpu.syncedSpecialRegisters()
        let space = addressSpaceInCR3()
        return GuestFault(
            .tripleFault, rip: rip, cr2: special?.cr2, cr3: special?.cr3,
            ripTranslation: AddressTranslation(of: rip, in: space),
            cr2Translation: special.map { AddressTranslation(of: $0.cr2, in: space) },
            hostRoot: space === addressSpace ? nil : addressSpace.rootPhysicalAddress)
    }

    /// The tables the vCPU walks now: the root in CR3, which is the host's unless the guest loaded its own.
    func addressSpaceInCR3() -> any AddressSpace {
        let cr3 = vcpu.syncedSpecialRegisters().cr3
        let host = addressSpace.rootPhysicalAddress
        let root = addressSpace.view(root: cr3)
        return root.rootPhysicalAddress == host ? addressSpace : root
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

    /// How the tables in CR3 translate `virtualAddress`: `(-> 0x201000, read-only, 4 KiB leaf)`,
    /// `(not mapped)`, ...
    public func describeTranslation(of virtualAddress: UInt64) -> String {
        AddressTranslation(of: virtualAddress, in: addressSpaceInCR3()).description
    }

    /// The address space in CR3 now, as ``AddressSpace/dump(lineLimit:tableLimit:)`` prints it (bounded),
    /// headed by a line naming the guest's own root when it loaded one.
    public func dumpTables() -> String {
        let space = addressSpaceInCR3()
        let header = space === addressSpace ? "" : "(the guest's own tables at \(hex(space.rootPhysicalAddress)))\n"
        return header + space.dump()
    }

    /// The vCPU's own translation of `virtualAddress` (`KVM_TRANSLATE`).
    public func vcpuTranslate(_ virtualAddress: UInt64) throws(KVMError) -> KVMKit.Translation {
        try vcpu.translate(virtualAddress)
    }

    /// The vCPU's registers.
    public func registers() throws(KVMError) -> Registers {
        try vcpu.registers()
    }

    /// The vCPU's special registers (segments, control registers, EFER).
    public func specialRegisters() throws(KVMError) -> SpecialRegisters {
        try vcpu.specialRegisters()
    }
}

/// Stops a running machine from any thread: the timeout's mechanism, offered to the embedder.
///
/// ``interrupt()`` marks the machine interrupted and kicks its vCPU out of `KVM_RUN` (or makes the next
/// entry return at once); ``Machine/run()`` then ends with ``RunError/interrupted(rip:exits:)`` (in debug
/// mode, ``Machine/setDebugSettings(_:)``, it returns ``DebugStop/interrupted(pc:)`` instead, and the machine
/// runs on with the next run). A console
/// sink blocked in a system call on the vCPU's thread sees that call fail with EINTR, and should give up
/// when ``isRequested``.
public struct Interrupter: Sendable {
    let state: State

    final class State: Sendable {
        let requested = Atomic<Bool>(false)
        /// The vCPU's kicker; replaced when a reset rebuilds the VM.
        let kicker: Mutex<VCPUKicker>
        init(kicker: VCPUKicker) { self.kicker = Mutex(kicker) }
    }

    init(kicker: VCPUKicker) { state = State(kicker: kicker) }

    /// Whether ``interrupt()`` has been called since the machine last started running clean.
    public var isRequested: Bool { state.requested.load(ordering: .acquiring) }

    /// Interrupts the machine's current or next run. Safe from any thread, any number of times; not from a
    /// signal handler (it takes a lock).
    public func interrupt() {
        state.requested.store(true, ordering: .releasing)
        state.kicker.withLock { $0.kick() }
    }

    /// Forgets an interruption (when the machine is reset).
    func clear() { state.requested.store(false, ordering: .releasing) }

    /// Points the interrupter at a new vCPU.
    func replace(kicker: VCPUKicker) { state.kicker.withLock { $0 = kicker } }
}
