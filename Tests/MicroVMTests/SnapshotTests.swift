import Foundation
import KVMKit
@_spi(Testing) import MicroVM
import PageTables
import Testing

@Suite("snapshots: take, restore, reset, save and load", .enabled(if: kvmUsable, kvmReason))
struct SnapshotTests {
    func counter(resettable: Bool = true) throws -> Machine {
        var config = try configuration("counter64")
        config.resettable = resettable
        return try Machine(configuration: config)
    }

    static let line = Array("counter = 42, scratch = 0\n".utf8)

    @Test("the guest's snapshot request stops the run; the machine runs on from there")
    func request() throws {
        let machine = try counter(resettable: false)
        #expect(try machine.run() == .snapshotRequested)
        #expect(machine.consoleOutput == Array("initialising\n".utf8))
        #expect(try machine.run() == .halted)
        #expect(machine.consoleOutput == Array("initialising\n".utf8) + Self.line)
    }

    @Test("reset brings the machine back to its snapshot, again and again")
    func resetInPlace() throws {
        let machine = try counter()
        #expect(try machine.run() == .snapshotRequested)
        _ = try machine.snapshot()
        for _ in 0..<5 {
            #expect(try machine.run() == .halted)
            try machine.reset()
        }
        #expect(machine.consoleOutput == Array("initialising\n".utf8) + Array([[UInt8]](repeating: Self.line, count: 5).joined()))
    }

    @Test("a snapshot restores into new machines, which share it and continue from the request")
    func restore() throws {
        let origin = try counter(resettable: false)
        #expect(try origin.run() == .snapshotRequested)
        let snapshot = try origin.snapshot()
        var settings = try configuration("counter64")
        settings.console = .capture
        let machines = try (0..<3).map { _ in try Machine(restoring: snapshot, configuration: settings) }
        for machine in machines {
            #expect(try machine.run() == .halted)
            #expect(machine.consoleOutput == Self.line)
            try machine.reset()
            #expect(try machine.run() == .halted)
            #expect(machine.consoleOutput == Self.line + Self.line)
        }
    }

    @Test("a snapshot file round-trips")
    func file() throws {
        let machine = try counter(resettable: false)
        #expect(try machine.run() == .snapshotRequested)
        let path = temporaryPath("counter.snap")
        defer { unlink(path) }
        try machine.snapshot().write(to: path)
        let loaded = try Snapshot(contentsOf: path)
        var settings = try configuration("counter64")
        settings.console = .capture
        let restored = try Machine(restoring: loaded, configuration: settings)
        #expect(try restored.run() == .halted)
        #expect(restored.consoleOutput == Self.line)
    }
}
