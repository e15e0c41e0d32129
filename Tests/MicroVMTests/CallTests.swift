import Foundation
import KVMKit
@_spi(Testing) import MicroVM
import PageTables
import Synchronization
import Testing

@Suite("calls across the boundary: guest functions and host functions", .enabled(if: kvmUsable, kvmReason))
struct CallTests {
    static let exports = ["add", "upper", "shout", "fail", "crash", "spin", "nothing"]

    /// calls64 booted to its ready point.
    func ready(resettable: Bool = false, timeout: Duration? = .seconds(5)) throws -> Machine {
        var config = try configuration("calls64")
        config.resettable = resettable
        config.timeout = timeout
        let machine = try Machine(configuration: config)
        #expect(try machine.run() == .ready)
        return machine
    }

    @Test("the guest announces its exports; integers and strings go in and come back")
    func guestFunctions() throws {
        let machine = try ready()
        #expect(machine.exportedFunctions == Self.exports)
        #expect(try machine.call("add", 2, 3) == 5)
        #expect(try machine.call("add", -7, 3) == -4)
        #expect(try machine.call("upper", "hello, World") == "HELLO, WORLD")
        #expect(try machine.call("upper", .bytes(Array("abc".utf8))) == "ABC")
        #expect(try machine.call("upper", "") == "")
        #expect(try machine.call("nothing") == CallValue.none)
        // Resolved once, called by index.
        let add = try machine.function("add")
        #expect(add.index == 0)
        for i in Int64(0)..<100 { #expect(try machine.call(add, [.int(i), .int(i)]) == .int(2 * i)) }
    }

    @Test("a call is one entry and one exit")
    func oneExitPerCall() throws {
        let machine = try ready()
        let before = machine.exitCount
        for _ in 0..<10 { _ = try machine.call("nothing") }
        #expect(machine.exitCount - before == 10)
    }

    @Test("the guest calls a host function back; its arguments and result are copied with bounds checks")
    func hostFunctions() throws {
        let machine = try ready()
        let seen = Mutex<[CallValue]>([])
        machine.register("log") { _, arguments in
            seen.withLock { $0 += arguments }
            return 41
        }
        #expect(try machine.call("shout", "hi there") == 42)
        #expect(seen.withLock { $0 } == [.string("hi there")])
    }

    @Test("misbehaviour is typed: unknown names, oversized arguments, guest errors, host functions that throw or are missing")
    func misbehaviour() throws {
        let machine = try ready()
        #expect(throws: CallError.unknownFunction("nope")) { try machine.call("nope") }
        #expect(throws: CallError.argumentsTooLarge(size: 9, capacity: 8)) {
            try machine.call("add", 1, 2, 3, 4, 5, 6, 7, 8, 9)
        }
        let huge = CallValue.bytes([UInt8](repeating: 0x61, count: 9000))
        #expect(throws: CallError.argumentsTooLarge(size: 256 + 9000, capacity: 8192)) { try machine.call("upper", huge) }
        #expect(throws: CallError.guestError(status: 7)) { try machine.call("fail") }
        // No host function "log": the hypercall answers 1, and shout reports status 9.
        #expect(throws: CallError.guestError(status: 9)) { try machine.call("shout", "x") }
        struct Refused: Error {}
        machine.register("log") { _, _ in throw Refused() }
        #expect(throws: CallError.guestError(status: 9)) { try machine.call("shout", "x") }
        // Still serving calls after all of that.
        #expect(try machine.call("add", 1, 1) == 2)
    }

    @Test("a fault mid-call is typed, and the machine refuses calls until it is reset")
    func faultMidCall() throws {
        let machine = try ready(resettable: true)
        _ = try machine.snapshot()
        let error = #expect(throws: CallError.self) { try machine.call("crash") }
        guard case .run(.fault(let fault))? = error else {
            Issue.record("expected a fault, got \(String(describing: error))")
            return
        }
        #expect(fault.kind == .tripleFault)
        #expect(fault.cr2 == 0x4000_0000)
        #expect(fault.cr2Translation == .notMapped)
        #expect(throws: CallError.run(.needsReset(after: fault.description))) { try machine.call("add", 1, 2) }
        try machine.reset()
        #expect(try machine.call("add", 1, 2) == 3)
    }

    @Test("a call that never returns ends at the timeout")
    func timeout() throws {
        let machine = try ready(resettable: true, timeout: .milliseconds(100))
        _ = try machine.snapshot()
        let error = #expect(throws: CallError.self) { try machine.call("spin") }
        guard case .run(.timeout)? = error else {
            Issue.record("expected a timeout, got \(String(describing: error))")
            return
        }
        try machine.reset()
        #expect(try machine.call("add", 20, 22) == 42)
    }

    @Test("call then reset, again and again; calls survive a snapshot file")
    func callsWithReset() throws {
        let machine = try ready(resettable: true)
        let snapshot = try machine.snapshot()
        for i in Int64(0)..<50 {
            #expect(try machine.call("add", .int(i), 1) == .int(i + 1))
            try machine.reset()
        }
        let path = temporaryPath("calls.snap")
        defer { unlink(path) }
        try snapshot.write(to: path)
        let restored = try Machine(restoring: try Snapshot(contentsOf: path))
        #expect(restored.exportedFunctions == Self.exports)
        #expect(try restored.call("upper", "restored") == "RESTORED")
    }

    @Test("async machines call too")
    func asyncCalls() async throws {
        let machine = try await AsyncMachine(configuration: try configuration("calls64"))
        #expect(try await machine.run() == .ready)
        let sum = try await machine.withMachine { (machine) throws(CallError) in try machine.call("add", 40, 2) }
        #expect(sum == 42)
    }
}

@Suite("calls on a resettable machine never overflow the dirty ring", .enabled(if: kvmUsable, kvmReason))
struct CallRingTests {
    @Test("more calls without a reset than the ring has entries")
    func manyCallsWithoutReset() throws {
        var config = try configuration("calls64")
        config.resettable = true
        config.dirtyRingEntries = 256  // the smallest ring: each call writes the call area a few times
        let machine = try Machine(configuration: config)
        #expect(try machine.run() == .ready)
        _ = try machine.snapshot()
        let add = try machine.function("add")
        for i in Int64(0)..<500 { #expect(try machine.call(add, [.int(i), 1]) == .int(i + 1)) }
        try machine.reset()
        #expect(try machine.call(add, [2, 2]) == 4)
    }
}
