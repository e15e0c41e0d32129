/// What the run loop does after a device served an access.
public enum DeviceResponse: Equatable, Sendable {
    /// Resume the guest.
    case resume
    /// End the run with `outcome` (the exit port does this).
    case stop(RunOutcome)
}

/// A device on the guest's I/O port bus: what the guest's `IN` and `OUT` (and `REP INS` / `REP OUTS`,
/// one call per unit) reach.
///
/// Methods run on the machine's thread, between two entries into the guest, with the machine at hand
/// (its memory, its address space, its registers). Throw a ``GuestFault`` to end the run with it (the
/// guest did something wrong); any other error ends it with ``RunError/deviceFailed(_:)``.
public protocol PortDevice: AnyObject {
    /// The guest reads `size` bytes (1, 2 or 4) from `port`; the low `size` bytes of the result are what it
    /// gets. By default the access ends the run as an unknown port (a write-only device).
    func read(port: UInt16, size: Int, machine: Machine) throws -> UInt32
    /// The guest writes the low `size` bytes (1, 2 or 4) of `value` to `port`. By default the access ends
    /// the run as an unknown port (a read-only device).
    func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse
}

extension PortDevice {
    /// Ends the run with an unknown-port fault naming the read: what a device that only serves writes
    /// gets for the guest's `IN`.
    public func read(port: UInt16, size: Int, machine: Machine) throws -> UInt32 {
        throw machine.fault(.unknownPort(port: port, size: size, writeValue: nil, count: 1))
    }
    /// Ends the run with an unknown-port fault naming the write and its value: what a device that only
    /// serves reads gets for the guest's `OUT`.
    public func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse {
        throw machine.fault(.unknownPort(port: port, size: size, writeValue: value, count: 1))
    }
}

/// A device at a range of guest-physical addresses that no RAM backs: what the guest's loads and stores
/// there reach (`KVM_EXIT_MMIO`).
///
/// Same rules as ``PortDevice``. Accesses are 1, 2, 4 or 8 bytes; `address` is the guest-physical address
/// accessed (not an offset).
public protocol MMIODevice: AnyObject {
    /// The guest loads `size` bytes at `address`; the low `size` bytes of the result are what it gets.
    func read(address: UInt64, size: Int, machine: Machine) throws -> UInt64
    /// The guest stores the low `size` bytes of `value` at `address`.
    func write(address: UInt64, size: Int, value: UInt64, machine: Machine) throws -> DeviceResponse
}

/// Why a device could not be attached.
public enum DeviceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Another device already serves part of the range.
    case portsInUse(ClosedRange<UInt16>)
    /// Another device already serves part of the range.
    case addressesInUse(Range<UInt64>)
    /// The range overlaps guest RAM (or is empty, or wraps): the guest's accesses there never reach a device.
    case addressesNotDevice(Range<UInt64>)

    /// One line for a person, naming what went wrong and the values involved.
    public var description: String {
        switch self {
        case .portsInUse(let ports):
            "ports \(hex(UInt64(ports.lowerBound)))-\(hex(UInt64(ports.upperBound))) are already served by a device"
        case .addressesInUse(let range):
            "addresses \(hex(range.lowerBound))-\(hex(range.upperBound &- 1)) are already served by a device"
        case .addressesNotDevice(let range):
            "addresses \(hex(range.lowerBound))..<\(hex(range.upperBound)) overlap guest RAM or are empty: no access there reaches a device"
        }
    }
}

/// The devices of one machine, looked up by port or address on every I/O exit.
///
/// A handful of entries searched in order: cheaper than hashing for the few devices a micro-VM has.
struct DeviceBus {
    var ports: [(range: ClosedRange<UInt16>, device: any PortDevice)] = []
    var mmio: [(range: Range<UInt64>, device: any MMIODevice)] = []

    @inline(__always) func device(port: UInt16) -> (any PortDevice)? {
        for entry in ports where entry.range.contains(port) { return entry.device }
        return nil
    }

    @inline(__always) func device(address: UInt64) -> (any MMIODevice)? {
        for entry in mmio where entry.range.contains(address) { return entry.device }
        return nil
    }

    mutating func attach(_ device: any PortDevice, ports range: ClosedRange<UInt16>) throws(DeviceError) {
        guard !ports.contains(where: { $0.range.overlaps(range) }) else { throw .portsInUse(range) }
        ports.append((range, device))
    }

    mutating func attach(_ device: any MMIODevice, addresses range: Range<UInt64>, memorySize: UInt64)
        throws(DeviceError)
    {
        guard !range.isEmpty, range.lowerBound >= memorySize else { throw .addressesNotDevice(range) }
        guard !mmio.contains(where: { $0.range.overlaps(range) }) else { throw .addressesInUse(range) }
        mmio.append((range, device))
    }

    /// Removes whatever serves `port`; returns it.
    mutating func detach(port: UInt16) -> (any PortDevice)? {
        guard let index = ports.firstIndex(where: { $0.range.contains(port) }) else { return nil }
        return ports.remove(at: index).device
    }

    /// Removes whatever serves `address`; returns it.
    mutating func detach(address: UInt64) -> (any MMIODevice)? {
        guard let index = mmio.firstIndex(where: { $0.range.contains(address) }) else { return nil }
        return mmio.remove(at: index).device
    }
}

// MARK: - The built-in devices

/// Port 0x3F8: each byte the guest writes goes to the machine's console (``MachineConfiguration/console``).
final class ConsolePort: PortDevice {
    func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse {
        try machine.console(UInt8(truncatingIfNeeded: value))
        return .resume
    }
}

/// Port 0xF4: a write ends the run with the value's low 8 bits as the guest's status.
final class ExitPort: PortDevice {
    func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse {
        .stop(.exited(status: UInt8(truncatingIfNeeded: value)))
    }
}

/// Port 0x510: a 32-bit write of a hypercall record's address (see ``HypercallOperation``).
final class HypercallPort: PortDevice {
    func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse {
        guard size == 4 else {
            throw machine.fault(.unknownPort(port: port, size: size, writeValue: value, count: 1))
        }
        return try machine.hypercall(recordAddress: UInt64(value))
    }
}

/// Port 0x511: a guest function returned; the call area holds its status and result.
final class ReturnPort: PortDevice {
    func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse {
        .stop(.returned)
    }
}
