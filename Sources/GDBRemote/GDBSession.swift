/// Serves one gdb connection against one ``GDBTarget``: reads packets, answers them, runs the target
/// when gdb says continue or step, and ends on detach, kill, the target's end, or a disconnect.
///
/// Runs on the calling thread, which must be the thread allowed to run the target (a vCPU's). While the
/// target runs, the transport watches for gdb's interrupt byte on a second thread and calls the target's
/// interrupt handler (``GDBTarget/makeInterruptHandler()``).
///
/// Every reply is bounded by ``maximumPacketSize`` (advertised to gdb as `PacketSize`): memory reads are
/// cut to fit and gdb asks again for the rest. Incoming packets longer than that are refused (`E07`)
/// without being buffered.
public final class GDBSession {
    /// Settings of a session.
    public struct Configuration: Hashable, Sendable {
        /// The largest packet payload, in bytes, the session accepts and sends; advertised as `PacketSize`.
        /// Raised if needed to fit a `G` packet of every register.
        public var maximumPacketSize: Int
        /// What `qAttached` answers: `true` if gdb attached to a machine that was already running (gdb then
        /// detaches on quit), `false` if the machine was started for gdb (gdb then kills it on quit).
        public var attachedToExistingTarget: Bool

        /// The defaults: 4 KiB packets, a machine started for gdb.
        public init(maximumPacketSize: Int = 4096, attachedToExistingTarget: Bool = false) {
            self.maximumPacketSize = maximumPacketSize
            self.attachedToExistingTarget = attachedToExistingTarget
        }
    }

    /// Counts of what the session saw and did.
    public struct Statistics: Hashable, Sendable {
        /// Packets with a valid checksum (including refused ones: too long, bad run length).
        public var packets = 0
        /// Replies sent (retransmissions excluded).
        public var replies = 0
        /// Valid packets deliberately left unanswered (`k`).
        public var unansweredPackets = 0
        /// Packets refused for a bad checksum.
        public var badChecksums = 0
        /// Retransmissions after a `-`.
        public var retransmissions = 0
        /// Interrupt bytes received while the target was running.
        public var interrupts = 0
        /// Times the target was resumed.
        public var resumes = 0
        /// The largest payload sent, in bytes.
        public var largestReply = 0
    }

    /// The target debugged.
    public let target: any GDBTarget
    /// The largest payload accepted or sent.
    public let maximumPacketSize: Int
    /// The configuration in use.
    public let configuration: Configuration
    /// What happened so far.
    public private(set) var statistics = Statistics()
    /// The target description served to gdb.
    public let targetDescription: GDBTargetDescription

    private var decoder: GDBPacketDecoder
    private var acknowledging = true
    private var lastReply: [UInt8]?
    private var lastStop = GDBStopReason.signal(.trap)
    private var reportsSoftwareBreakpoints = false
    private var reportsHardwareBreakpoints = false
    private var interruptHandler: (@Sendable () -> Void)?
    private var input: [UInt8] = []
    private var inputPosition = 0
    private var end: GDBSessionEnd?

    /// The page size used to retry a failed memory read piece by piece.
    private static let pageSize: UInt64 = 4096

    /// A session for `target`; nothing happens until ``serve(over:)``.
    public init(target: any GDBTarget, configuration: Configuration = Configuration()) {
        self.target = target
        self.configuration = configuration
        let registerPacket = 1 + 2 * target.architecture.registerFileByteCount
        self.maximumPacketSize = max(configuration.maximumPacketSize, registerPacket, 256)
        self.decoder = GDBPacketDecoder(maximumPayloadSize: maximumPacketSize)
        self.targetDescription = GDBTargetDescription(architecture: target.architecture)
    }

    /// Serves gdb over `transport` until the session ends, and says how it ended. A session serves one
    /// connection: once it has ended, calling this again returns the same end at once.
    ///
    /// Ends after `D` (``GDBSessionEnd/detached``, the target detached), `k` (``GDBSessionEnd/killed``, the
    /// target killed), a `W` or `X` stop reply (``GDBSessionEnd/targetEnded(_:)``), a resume that threw
    /// (``GDBSessionEnd/targetFailed(_:)``), gdb closing the connection (``GDBSessionEnd/disconnected``;
    /// the target is left as it is, stopped), or a transport failure.
    public func serve(over transport: any GDBTransport) -> GDBSessionEnd {
        while end == nil {
            if inputPosition == input.count {
                input.removeAll(keepingCapacity: true)
                inputPosition = 0
                do {
                    let bytes = try transport.receive(maximumCount: 4096)
                    if bytes.isEmpty { return .disconnected }
                    input = bytes
                } catch {
                    return error == .disconnected ? .disconnected : .transportFailed(error)
                }
            }
            let byte = input[inputPosition]
            inputPosition += 1
            guard let event = decoder.feed(byte) else { continue }
            do {
                try handle(event, over: transport)
            } catch {
                return error == .disconnected ? .disconnected : .transportFailed(error)
            }
        }
        return end!
    }

    // MARK: Events

    private func handle(_ event: GDBPacketDecoder.Event, over transport: any GDBTransport) throws(GDBTransportError) {
        switch event {
        case .ack, .interrupt:
            // A late interrupt (the target stopped on its own meanwhile) needs no answer.
            break
        case .nack:
            if acknowledging, let lastReply {
                statistics.retransmissions += 1
                try transport.send(lastReply)
            }
        case .badChecksum:
            statistics.badChecksums += 1
            if acknowledging { try transport.send([GDBPacket.nack]) }
        case .tooLong:
            statistics.packets += 1
            try acknowledge(transport)
            try reply(Self.error(0x07), over: transport)
        case .badRunLength:
            statistics.packets += 1
            try acknowledge(transport)
            try reply(Self.error(0x16), over: transport)
        case .packet(let payload):
            statistics.packets += 1
            try acknowledge(transport)
            let command = GDBCommand(parsing: payload)
            if let response = try execute(command, over: transport) {
                try reply(response, over: transport)
            } else {
                statistics.unansweredPackets += 1
            }
            if command == .startNoAckMode { acknowledging = false }
        }
    }

    private func acknowledge(_ transport: any GDBTransport) throws(GDBTransportError) {
        if acknowledging { try transport.send([GDBPacket.ack]) }
    }

    private func reply(_ payload: [UInt8], over transport: any GDBTransport) throws(GDBTransportError) {
        precondition(payload.count <= maximumPacketSize, "a reply outgrew the packet size")
        let framed = GDBPacket.framed(payload)
        statistics.replies += 1
        statistics.largestReply = max(statistics.largestReply, payload.count)
        lastReply = framed
        try transport.send(framed)
    }

    // MARK: Commands

    /// The reply payload, or `nil` for a packet that gets none (`k`, or one answered already).
    private func execute(_ command: GDBCommand, over transport: any GDBTransport) throws(GDBTransportError)
        -> [UInt8]?
    {
        switch command {
        case .querySupported(let features):
            reportsSoftwareBreakpoints = features.contains("swbreak+")
            reportsHardwareBreakpoints = features.contains("hwbreak+")
            var reply = "PacketSize=\(GDBPacket.hexString(UInt64(maximumPacketSize)));qXfer:features:read+"
            reply += ";QStartNoAckMode+;vContSupported+"
            if reportsSoftwareBreakpoints { reply += ";swbreak+" }
            if reportsHardwareBreakpoints { reply += ";hwbreak+" }
            return Array(reply.utf8)
        case .startNoAckMode:
            return Self.ok
        case .readFeatures(let annex, let offset, let length):
            return readFeatures(annex: annex, offset: offset, length: length)
        case .haltReason:
            return stopReply(lastStop)
        case .readRegisters:
            return withTarget { () throws -> [UInt8] in
                let registers = try target.readRegisters()
                guard registers.architecture == target.architecture else { throw Self.wrongArchitecture }
                return GDBPacket.hexEncoded(registers.bytes)
            }
        case .writeRegisters(let bytes):
            guard let registers = GDBRegisterFile(architecture: target.architecture, bytes: bytes) else {
                return Self.error(0x16)
            }
            return withTarget { () throws -> [UInt8] in
                try target.writeRegisters(registers)
                return Self.ok
            }
        case .readRegister(let number):
            return withTarget { () throws -> [UInt8] in
                guard number < UInt64(target.architecture.registers.count),
                    let bytes = try target.readRegisters().bytes(ofNumber: Int(number))
                else { return Self.error(0x16) }
                return GDBPacket.hexEncoded(bytes)
            }
        case .writeRegister(let number, let bytes):
            return withTarget { () throws -> [UInt8] in
                var registers = try target.readRegisters()
                guard number < UInt64(target.architecture.registers.count),
                    registers.setBytes(bytes, ofNumber: Int(number))
                else { return Self.error(0x16) }
                try target.writeRegisters(registers)
                return Self.ok
            }
        case .readMemory(let address, let length):
            return readMemory(at: address, length: length)
        case .writeMemory(let address, let bytes):
            guard !bytes.isEmpty else { return Self.ok }
            guard address <= UInt64.max - UInt64(bytes.count - 1) else { return Self.error(0x16) }
            return withTarget { () throws -> [UInt8] in
                try target.writeMemory(at: address, bytes: bytes)
                return Self.ok
            }
        case .resume(let mode, let address):
            if let address {
                let moved = withTarget { () throws -> [UInt8] in
                    var registers = try target.readRegisters()
                    registers[GDBArchitecture.programCounter] = address
                    try target.writeRegisters(registers)
                    return Self.ok
                }
                guard moved == Self.ok else { return moved }
            }
            return try resume(mode, over: transport)
        case .queryResumeActions:
            return Array("vCont;c;C;s;S".utf8)
        case .insertBreakpoint(let kind, let address, let length),
            .removeBreakpoint(let kind, let address, let length):
            guard length <= UInt64(Int.max) else { return Self.error(0x16) }
            let insert = if case .insertBreakpoint = command { true } else { false }
            return withTarget { () throws -> [UInt8] in
                if insert {
                    try target.insertBreakpoint(kind, at: address, length: Int(length))
                } else {
                    try target.removeBreakpoint(kind, at: address, length: Int(length))
                }
                return Self.ok
            }
        case .kill:
            target.kill()
            end = .killed
            return nil
        case .detach:
            target.detach()
            end = .detached
            return Self.ok
        case .queryAttached:
            return configuration.attachedToExistingTarget ? Array("1".utf8) : Array("0".utf8)
        case .queryCurrentThread:
            return Array("QC1".utf8)
        case .firstThreadInfo:
            return Array("m1".utf8)
        case .nextThreadInfo:
            return Array("l".utf8)
        case .setThread(let operation, let thread):
            let known = operation == UInt8(ascii: "g") || operation == UInt8(ascii: "c")
            return known && thread.includesTheThread ? Self.ok : Self.error(0x16)
        case .threadAlive(let thread):
            return thread.includesTheThread ? Self.ok : Self.error(0x16)
        case .malformed:
            return Self.error(0x16)
        case .unsupported:
            return []
        }
    }

    private func readFeatures(annex: String, offset: UInt64, length: UInt64) -> [UInt8] {
        guard let document = targetDescription.documents[annex] else { return Self.error(0x00) }
        let bytes = Array(document.utf8)
        guard offset < UInt64(bytes.count) else { return Array("l".utf8) }
        var reply: [UInt8] = [UInt8(ascii: "m")]
        var index = Int(offset)
        let end = Int(offset + min(length, UInt64(bytes.count) - offset))
        while index < end {
            let byte = bytes[index]
            if GDBPacket.needsEscape(byte) {
                guard reply.count + 2 <= maximumPacketSize else { break }
                reply.append(GDBPacket.escape)
                reply.append(byte ^ GDBPacket.escapeXOR)
            } else {
                guard reply.count + 1 <= maximumPacketSize else { break }
                reply.append(byte)
            }
            index += 1
        }
        if index == bytes.count { reply[0] = UInt8(ascii: "l") }
        return reply
    }

    private func readMemory(at address: UInt64, length: UInt64) -> [UInt8] {
        guard length > 0 else { return Self.error(0x16) }
        // Two hex digits per byte; the rest of a long read is asked for again by gdb.
        var count = min(length, UInt64(maximumPacketSize / 2))
        let bytesAfterAddress = UInt64.max - address
        if bytesAfterAddress < count - 1 { count = bytesAfterAddress + 1 }  // never wrap past the top
        let wanted = Int(count)
        do {
            let bytes = try target.readMemory(at: address, count: wanted)
            guard !bytes.isEmpty else { return Self.error(0x0E) }
            return GDBPacket.hexEncoded(bytes.prefix(wanted))
        } catch let error as GDBTargetError {
            guard case .memoryFault = error else { return Self.reply(for: error) }
        } catch {
            return Self.error(0x05)
        }
        // Part of the range is unreadable: return the readable prefix, page by page.
        var prefix: [UInt8] = []
        var next = address
        while prefix.count < wanted {
            let toPageEnd = Self.pageSize - next % Self.pageSize
            let chunk = Int(min(UInt64(wanted - prefix.count), toPageEnd))
            guard let bytes = try? target.readMemory(at: next, count: chunk), bytes.count == chunk else { break }
            prefix += bytes
            guard prefix.count < wanted else { break }
            next += UInt64(chunk)
        }
        return prefix.isEmpty ? Self.error(0x0E) : GDBPacket.hexEncoded(prefix)
    }

    private func resume(_ mode: GDBResumeMode, over transport: any GDBTransport) throws(GDBTransportError)
        -> [UInt8]?
    {
        let handler = interruptHandler ?? target.makeInterruptHandler()
        interruptHandler = handler
        // An interrupt byte that arrived together with the resume packet is already in our buffer.
        let pending = input[inputPosition...].contains(GDBPacket.interruptByte)
        var outcome: Result<GDBStopReason, any Error> = .success(.signal(.interrupt))
        statistics.resumes += 1
        let target = self.target
        let received = try transport.run(interrupting: handler) {
            if pending { handler() }
            outcome = Result { try target.resume(mode) }
        }
        statistics.interrupts += received.count { $0 == GDBPacket.interruptByte }
        input.append(contentsOf: received)
        switch outcome {
        case .success(let stop):
            lastStop = stop
            if stop.endsTarget { end = .targetEnded(stop) }
            return stopReply(stop)
        case .failure(let error):
            end = .targetFailed(String(describing: error))
            return Array("X".utf8) + GDBPacket.hexDigits(of: GDBSignal.abort.rawValue)
        }
    }

    /// The stop reply for `stop` (`T`, `W`, `X`).
    private func stopReply(_ stop: GDBStopReason) -> [UInt8] {
        let thread = "thread:1;"
        let text: String
        switch stop {
        case .signal(let signal):
            text = "T\(Self.hex2(signal.rawValue))\(thread)"
        case .softwareBreakpoint:
            text = reportsSoftwareBreakpoints ? "T05swbreak:;\(thread)" : "T05\(thread)"
        case .hardwareBreakpoint:
            text = reportsHardwareBreakpoints ? "T05hwbreak:;\(thread)" : "T05\(thread)"
        case .watchpoint(let kind, let address):
            let name =
                switch kind {
                case .readWatchpoint: "rwatch"
                case .accessWatchpoint: "awatch"
                default: "watch"
                }
            text = "T05\(name):\(GDBPacket.hexString(address));\(thread)"
        case .exited(let status):
            text = "W\(Self.hex2(status))"
        case .terminated(let signal):
            text = "X\(Self.hex2(signal.rawValue))"
        }
        return Array(text.utf8)
    }

    // MARK: Replies

    private static let ok = Array("OK".utf8)
    private static let wrongArchitecture = GDBTargetError.invalidArgument("register file of another architecture")

    private static func hex2(_ byte: UInt8) -> String {
        String(decoding: GDBPacket.hexDigits(of: byte), as: UTF8.self)
    }

    /// `E NN`: an error reply with an errno-style number.
    private static func error(_ number: UInt8) -> [UInt8] {
        [UInt8(ascii: "E")] + GDBPacket.hexDigits(of: number)
    }

    private static func reply(for error: GDBTargetError) -> [UInt8] {
        switch error {
        case .unsupported: []
        case .memoryFault: Self.error(0x0E)
        case .resourceExhausted: Self.error(0x1C)
        case .invalidArgument: Self.error(0x16)
        }
    }

    /// Runs a target call; a thrown ``GDBTargetError`` becomes its reply, any other error `E05`.
    private func withTarget(_ body: () throws -> [UInt8]) -> [UInt8] {
        do {
            return try body()
        } catch let error as GDBTargetError {
            return Self.reply(for: error)
        } catch {
            return Self.error(0x05)
        }
    }
}

/// How a ``GDBSession`` ended.
public enum GDBSessionEnd: Hashable, Sendable, CustomStringConvertible {
    /// gdb detached (`D`); the target was told to run on its own.
    case detached
    /// gdb killed the target (`k`).
    case killed
    /// gdb closed the connection; the target is stopped and untouched.
    case disconnected
    /// The target ended (`W` or `X` was sent).
    case targetEnded(GDBStopReason)
    /// The target's resume threw; gdb was told the program was killed (`X06`). The error's description.
    case targetFailed(String)
    /// Sending or receiving failed.
    case transportFailed(GDBTransportError)

    /// One line for a person.
    public var description: String {
        switch self {
        case .detached: "gdb detached"
        case .killed: "gdb killed the target"
        case .disconnected: "gdb disconnected"
        case .targetEnded(.exited(let status)): "the target exited with status \(status)"
        case .targetEnded(.terminated(let signal)): "the target was terminated by signal \(signal.rawValue)"
        case .targetEnded(let stop): "the target ended (\(stop))"
        case .targetFailed(let reason): "the target failed: \(reason)"
        case .transportFailed(let error): "the connection failed: \(error)"
        }
    }
}
