import Foundation
import KVMKit
@_spi(Testing) import MicroVM
import PageTables
import Synchronization
import Testing

/// A port and MMIO device that records every access and answers reads with known values.
final class RecordingDevice: PortDevice, MMIODevice {
    enum Access: Equatable {
        case portWrite(UInt16, size: Int, UInt32)
        case portRead(UInt16, size: Int)
        case mmioWrite(UInt64, size: Int, UInt64)
        case mmioRead(UInt64, size: Int)
    }
    var accesses: [Access] = []

    func read(port: UInt16, size: Int, machine: Machine) throws -> UInt32 {
        accesses.append(.portRead(port, size: size))
        return 0xA1B2_C3D4  // the guest gets the low `size` bytes
    }
    func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse {
        accesses.append(.portWrite(port, size: size, value))
        return .resume
    }
    func read(address: UInt64, size: Int, machine: Machine) throws -> UInt64 {
        accesses.append(.mmioRead(address, size: size))
        return 0x0102_0304_0506_0708
    }
    func write(address: UInt64, size: Int, value: UInt64, machine: Machine) throws -> DeviceResponse {
        accesses.append(.mmioWrite(address, size: size, value))
        return .resume
    }
}

@Suite("embedding: devices, console sinks, interrupts and async machines", .enabled(if: kvmUsable, kvmReason))
struct EmbeddingTests {
    @Test("an embedder's port and MMIO devices see every access, sizes 1, 2, 4 and 8, and answer reads")
    func devices() throws {
        var config = try configuration("devices64")
        config.extraMappings = [.identity(0xD000_0000, length: 0x1000, kind: .readWrite)]
        let machine = try Machine(configuration: config)
        let device = RecordingDevice()
        try machine.attach(device, ports: 0x100...0x101)
        try machine.attach(device, addresses: 0xD000_0000..<0xD000_1000)
        #expect(try machine.run() == .halted)
        let echo = { (value: UInt32) in RecordingDevice.Access.portWrite(0x101, size: 4, value) }
        #expect(
            device.accesses == [
                .portWrite(0x100, size: 1, 0x11), .portWrite(0x100, size: 2, 0x2222),
                .portWrite(0x100, size: 4, 0x3333_3333),
                .portRead(0x100, size: 1), echo(0xD4), .portRead(0x100, size: 2), echo(0xC3D4),
                .portRead(0x100, size: 4), echo(0xA1B2_C3D4),
                .mmioWrite(0xD000_0000, size: 1, 0x44), .mmioWrite(0xD000_0002, size: 2, 0x5555),
                .mmioWrite(0xD000_0004, size: 4, 0x6666_6666), .mmioWrite(0xD000_0008, size: 8, 0x7777_7777_7777_7777),
                .mmioRead(0xD000_0000, size: 1), echo(0x08), .mmioRead(0xD000_0002, size: 2), echo(0x0708),
                .mmioRead(0xD000_0004, size: 4), echo(0x0506_0708),
                .mmioRead(0xD000_0008, size: 8), echo(0x0506_0708), echo(0x0102_0304),
            ])
    }

    @Test("devices are refused where another serves, or where RAM is; the built-in console can be replaced")
    func attachRules() throws {
        let machine = try Machine(configuration: try configuration("hello64"))
        let device = RecordingDevice()
        #expect(throws: DeviceError.portsInUse(0x3F0...0x3FF)) { try machine.attach(device, ports: 0x3F0...0x3FF) }
        #expect(throws: DeviceError.addressesNotDevice(0x10_0000..<0x10_1000)) {
            try machine.attach(device, addresses: 0x10_0000..<0x10_1000)
        }
        try machine.attach(device, addresses: 0xE000_0000..<0xE000_1000)
        #expect(throws: DeviceError.addressesInUse(0xE000_0800..<0xE000_2000)) {
            try machine.attach(device, addresses: 0xE000_0800..<0xE000_2000)
        }
        #expect(machine.detachDevice(port: 0x3F8) != nil)
        try machine.attach(device, ports: 0x3F8...0x3F8)
        #expect(try machine.run() == .halted)
        let text = device.accesses.compactMap { access -> UInt8? in
            if case .portWrite(0x3F8, 1, let value) = access { return UInt8(value) }
            return nil
        }
        #expect(text == Array("hello from microvm (amd64)\n".utf8))
        #expect(machine.consoleOutput.isEmpty)
    }

    @Test("a device that throws a GuestFault ends the run with it; any other error is a device failure")
    func deviceErrors() throws {
        final class Refusing: PortDevice {
            let fault: Bool
            init(fault: Bool) { self.fault = fault }
            struct Broken: Error, CustomStringConvertible { var description: String { "the disk is on fire" } }
            func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse {
                if fault { throw machine.fault(.badHypercall("refused")) }
                throw Broken()
            }
        }
        for fault in [true, false] {
            let machine = try Machine(configuration: try configuration("port64"))
            try machine.attach(Refusing(fault: fault), ports: 0x80...0x80)
            let error = #expect(throws: RunError.self) { try machine.run() }
            if fault {
                #expect(error?.description == "bad hypercall: refused")
            } else {
                #expect(error == .deviceFailed("the disk is on fire"))
            }
        }
    }

    @Test("a console sink gets the bytes in chunks, at each newline")
    func consoleSink() throws {
        let chunks = Mutex<[[UInt8]]>([])
        var config = try configuration("exit64")
        config.console = .sink { bytes in chunks.withLock { $0.append(bytes) } }
        let machine = try Machine(configuration: config)
        #expect(try machine.run() == .exited(status: 42))
        #expect(chunks.withLock { $0 } == [Array("exiting with 42\n".utf8)])
    }

    @Test("a sink that throws ends the run with the console failure")
    func failingSink() throws {
        struct Full: Error, CustomStringConvertible { var description: String { "no room" } }
        var config = try configuration("hello64")
        config.console = .sink { _ in throw Full() }
        let machine = try Machine(configuration: config)
        #expect(throws: RunError.consoleFailed("no room")) { try machine.run() }
    }

    @Test("capture keeps the first bytes and counts the rest: a flooding guest cannot grow host memory")
    func boundedCapture() throws {
        var config = try configuration("flood64")
        config.console = .capture(limit: 100)
        config.timeout = .milliseconds(300)
        let machine = try Machine(configuration: config)
        #expect(throws: RunError.self) { try machine.run() }
        #expect(machine.consoleOutput.count == 100)
        #expect(machine.consoleOutput.prefix(12) == Array("flood\nflood\n".utf8)[...])
        #expect(machine.consoleBytesDropped > 1000)
    }

    @Test("interrupt() from another thread stops a guest that never exits; the machine then needs a reset")
    func interruptFromAnotherThread() throws {
        var config = try configuration("loop64")
        config.timeout = nil
        let machine = try Machine(configuration: config)
        let interrupter = machine.interrupter
        let thread = Thread {
            usleep(100_000)
            interrupter.interrupt()
        }
        thread.start()
        let error = #expect(throws: RunError.self) { try machine.run() }
        guard case .interrupted(let rip, let exits)? = error else {
            Issue.record("expected an interruption, got \(String(describing: error))")
            return
        }
        #expect(rip == 0x10_0015)
        #expect(exits == 8)  // one per byte of "looping\n", and nothing after: kicks are not exits
        #expect(throws: RunError.needsReset(after: error!.description)) { try machine.run() }
    }

    @Test("an async machine runs on its own thread and can be interrupted from a task")
    func asyncMachine() async throws {
        let hello = try await AsyncMachine(configuration: try configuration("hello64"))
        #expect(try await hello.run() == .halted)
        let output = await hello.withMachine { $0.consoleOutput }
        #expect(output == Array("hello from microvm (amd64)\n".utf8))

        var config = try configuration("loop64")
        config.timeout = nil
        let loop = try await AsyncMachine(configuration: config)
        let stopper = Task {
            try await Task.sleep(for: .milliseconds(100))
            loop.interrupt()
        }
        await #expect(throws: RunError.self) { try await loop.run() }
        try await stopper.value
    }

    @Test("machines on several threads run side by side")
    func concurrentMachines() async throws {
        let image = try guest("hello64")
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var config = MachineConfiguration(architecture: .amd64, image: image)
                    config.console = .capture
                    var halted = 0
                    for _ in 0..<5 {
                        let machine = try await AsyncMachine(configuration: config)
                        if try await machine.run() == .halted { halted += 1 }
                    }
                    return halted
                }
            }
            var total = 0
            for try await halted in group { total += halted }
            #expect(total == 20)
        }
    }
}
