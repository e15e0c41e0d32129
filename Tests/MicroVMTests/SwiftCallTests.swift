import Foundation
@_spi(Testing) import MicroVM
import Testing

// callee64 (Guests/swift/callee64.swift): the call ABI's guest side in Embedded Swift (Guests/swift/Runtime/
// Calls.swift), called exactly as calls64 is.

@Suite("Embedded Swift calls: callee64 on KVM (amd64)", .enabled(if: kvmUsable, kvmReason))
struct SwiftCallTests {
    static let exports = ["add", "reverse", "greet", "fail", "nothing", "heap"]
    /// The call area's bytes: callee64 serves with 2 pages.
    static let area = 8192

    /// callee64 booted to its ready point (optionally resettable, and then snapshotted there for `reset()`).
    func ready(resettable: Bool = false) throws -> Machine {
        var configuration = try configuration("callee64")
        configuration.resettable = resettable
        configuration.timeout = .seconds(20)  // every instruction is emulated here
        let machine = try Machine(configuration: configuration)
        #expect(try machine.run() == .ready)
        if resettable { _ = try machine.snapshot() }
        return machine
    }

    /// The arguments of each call to a host function.
    final class Recorder {
        var calls: [[CallValue]] = []
    }

    /// A host function "log" that records its arguments and returns `answer`.
    func registerLog(_ machine: Machine, answer: CallValue = 41) -> Recorder {
        let seen = Recorder()
        machine.register("log") { _, arguments in
            seen.calls.append(arguments)
            return answer
        }
        return seen
    }

    @Test("callee64.elf, loaded by its program header instead of as a flat image, serves the same calls")
    func elf() throws {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(packageRoot)/Guests/swift/callee64.elf")))
        var configuration = MachineConfiguration(elf: try ELFImage(bytes: bytes, architecture: .amd64))
        configuration.timeout = .seconds(20)
        let machine = try Machine(configuration: configuration)
        #expect(try machine.run() == .ready)
        #expect(machine.exportedFunctions == Self.exports)
        _ = registerLog(machine)
        #expect(try machine.call("add", 40, 2) == 42)
        #expect(try machine.call("reverse", "elf") == "fle")
        #expect(try machine.call("greet", "elf") == 42)
    }

    @Test("callee64 announces its six exports, prints nothing, and its area came from the heap")
    func exports() throws {
        let machine = try ready()
        #expect(machine.exportedFunctions == Self.exports)
        #expect(machine.consoleOutput.isEmpty)
        #expect(try machine.function("add").index == 0)
        #expect(try machine.function("heap").index == 5)
        // The call area is the heap's first allocation (page-aligned, right after the image): nothing else.
        #expect(try machine.call("heap") == .int(Int64(Self.area)))
    }

    @Test("add: integers in, their wrapping sum out; a missing argument or one of another kind is status 1")
    func add() throws {
        let machine = try ready()
        #expect(try machine.call("add", 2, 3) == 5)
        #expect(try machine.call("add", -7, 3) == -4)
        #expect(try machine.call("add", .int(Int64.max), 1) == .int(Int64.min))
        #expect(try machine.call("add", 1, 2, 3) == 3)  // extra arguments are ignored
        #expect(throws: CallError.guestError(status: 1)) { try machine.call("add", 1) }
        #expect(throws: CallError.guestError(status: 1)) { try machine.call("add") }
        #expect(throws: CallError.guestError(status: 1)) { try machine.call("add", "1", 2) }
        #expect(throws: CallError.guestError(status: 1)) { try machine.call("add", 1, .none) }
        let add = try machine.function("add")
        for i in Int64(0)..<50 { #expect(try machine.call(add, [.int(i), .int(-2 * i)]) == .int(-i)) }
    }

    @Test("reverse: bytes byte by byte, strings character by character, the argument's kind kept")
    func reverse() throws {
        let machine = try ready()
        #expect(try machine.call("reverse", "hello") == "olleh")
        #expect(try machine.call("reverse", "") == "")
        #expect(try machine.call("reverse", "a") == "a")
        #expect(try machine.call("reverse", "héllo, wörld") == "dlröw ,olléh")
        #expect(try machine.call("reverse", "a🙂b€") == "€b🙂a")
        #expect(try machine.call("reverse", .bytes([1, 2, 3, 0xC3])) == .bytes([0xC3, 3, 2, 1]))
        #expect(try machine.call("reverse", .bytes([])) == .bytes([]))
        // The result is written after the argument in the 8 KiB area: 256 + 3,904 + 3,900 bytes fit...
        let long = (0..<3900).map { UInt8(truncatingIfNeeded: $0 * 7) }
        #expect(try machine.call("reverse", .bytes(long)) == .bytes(long.reversed()))
        // ... 256 + 4,000 + 4,000 do not: status 2, no result.
        #expect(throws: CallError.guestError(status: 2)) {
            try machine.call("reverse", .bytes([UInt8](repeating: 0x61, count: 4000)))
        }
        #expect(throws: CallError.guestError(status: 1)) { try machine.call("reverse", 5) }
        #expect(throws: CallError.guestError(status: 1)) { try machine.call("reverse") }
        #expect(try machine.call("reverse", "still serving") == "gnivres llits")
    }

    @Test("greet calls the host function log with the exact message and returns its answer plus one")
    func greet() throws {
        let machine = try ready()
        let seen = registerLog(machine)
        #expect(try machine.call("greet", "world") == 42)
        #expect(try machine.call("greet", "Zoë") == 42)
        #expect(try machine.call("greet", .bytes(Array("bytes".utf8))) == 42)
        #expect(try machine.call("greet", "") == 42)
        #expect(
            seen.calls == [
                [.string("hello, world!")], [.string("hello, Zoë!")], [.string("hello, bytes!")], [.string("hello, !")],
            ])
        // What log returns comes back plus one, wrapping.
        machine.register("log") { _, arguments in .int(Int64(arguments.first?.string?.utf8.count ?? -100)) }
        #expect(try machine.call("greet", "ab") == 11)  // "hello, ab!" is 10 bytes
        machine.register("log") { _, _ in .int(Int64.max) }
        #expect(try machine.call("greet", "x") == .int(Int64.min))
        // A name that fills the call area: the message does not fit after it (status 2, log is not called).
        let calls = registerLog(machine)
        #expect(throws: CallError.guestError(status: 2)) {
            try machine.call("greet", .string(String(repeating: "n", count: Self.area - 256 - 4)))
        }
        #expect(calls.calls.isEmpty)
        #expect(throws: CallError.guestError(status: 1)) { try machine.call("greet", 5) }
    }

    @Test("greet without log, with a log that throws or answers no integer: its status says which")
    func greetFailures() throws {
        let machine = try ready()
        // No "log": hypercall 7 answers 1, greet fails with 100 + 1.
        #expect(throws: CallError.guestError(status: 101)) { try machine.call("greet", "nobody") }
        struct Refused: Error {}
        machine.register("log") { _, _ in throw Refused() }
        #expect(throws: CallError.guestError(status: 104)) { try machine.call("greet", "x") }
        machine.register("log") { _, _ in "not a number" }
        #expect(throws: CallError.guestError(status: 110)) { try machine.call("greet", "x") }
        machine.register("log") { _, _ in .none }
        #expect(throws: CallError.guestError(status: 110)) { try machine.call("greet", "x") }
        // A string too long for the runtime's 1 KiB result buffer: hypercall 7 answers 3.
        machine.register("log") { _, _ in .bytes([UInt8](repeating: 0, count: 1024)) }
        #expect(throws: CallError.guestError(status: 103)) { try machine.call("greet", "x") }
        _ = registerLog(machine, answer: 1)
        #expect(try machine.call("greet", "back") == 2)
    }

    @Test("descriptors the host would never write: the guest's accessors refuse what leaves the area or the count")
    func guestBoundsChecks() throws {
        let machine = try ready()
        // The call area is the heap's first allocation: the page after the image.
        let area = (0x10_0000 + UInt64(try guest("callee64").count) + 0xFFF) & ~0xFFF
        #expect(try machine.call("reverse", "abc") == "cba")
        #expect(machine.memory.read(at: area + 256, count: 3) == Array("abc".utf8))
        /// Enters the guest with reverse(one argument of kind 3 at `offset`, `length`) and `count` arguments,
        /// as the host's call would but with these fields, and returns (status, result kind, offset, length).
        func reverse(offset: UInt64, length: UInt64, count: UInt32 = 1) throws -> [UInt64] {
            let memory = machine.memory
            for (at, value) in [(0, 1), (4, count), (8, 0), (12, 0), (32, 3)] as [(UInt64, UInt32)] {
                _ = memory.store(value, at: area + at)
            }
            _ = memory.store(offset, at: area + 40)
            _ = memory.store(length, at: area + 48)
            #expect(try machine.run() == .returned)
            return [
                UInt64(machine.memory.load(UInt32.self, at: area + 8) ?? 99),
                UInt64(machine.memory.load(UInt32.self, at: area + 12) ?? 99),
                machine.memory.load(UInt64.self, at: area + 16) ?? 99,
                machine.memory.load(UInt64.self, at: area + 24) ?? 99,
            ]
        }
        // Bytes past the end of the 8 KiB area, or whose end wraps around: status 1.
        #expect(try reverse(offset: 8000, length: 1000)[0] == 1)
        #expect(try reverse(offset: 8193, length: 0)[0] == 1)
        #expect(try reverse(offset: UInt64.max - 0xFF, length: 0x200)[0] == 1)
        // An argument beyond the count the host gave: status 1 (the descriptor itself is fine).
        #expect(try reverse(offset: 256, length: 3, count: 0)[0] == 1)
        // The last 4 bytes of the area are a valid argument, but no room is left after them: status 2.
        #expect(try reverse(offset: 8188, length: 4)[0] == 2)
        // Nothing at the very end: an empty string, where it lies.
        #expect(try reverse(offset: 8192, length: 0) == [0, 3, 8192, 0])
        // A count above 8 is read as 8.
        #expect(try reverse(offset: 256, length: 3, count: 1000) == [0, 3, 264, 3])
        #expect(machine.memory.read(at: area + 264, count: 3) == Array("cba".utf8))
        // And the host's own calls go on.
        #expect(try machine.call("add", 1, 2) == 3)
    }

    @Test("fail reports its status; nothing returns nothing")
    func failAndNothing() throws {
        let machine = try ready()
        #expect(throws: CallError.guestError(status: 7)) { try machine.call("fail") }
        #expect(try machine.call("nothing") == CallValue.none)
        #expect(try machine.call("nothing", 1, "ignored") == CallValue.none)
        #expect(try machine.call("add", 20, 22) == 42)
    }

    @Test("a call to nothing is one exit; greet is two (its hypercall and the return)")
    func exitsPerCall() throws {
        let machine = try ready()
        var before = machine.exitCount
        for _ in 0..<20 { #expect(try machine.call("nothing") == CallValue.none) }
        #expect(machine.exitCount - before == 20)
        _ = registerLog(machine)
        before = machine.exitCount
        for _ in 0..<5 { _ = try machine.call("greet", "x") }
        #expect(machine.exitCount - before == 10)
        #expect(machine.consoleOutput.isEmpty)
    }

    @Test("calls allocate nothing: the heap is the call area after hundreds of calls")
    func noAllocation() throws {
        let machine = try ready()
        _ = registerLog(machine)
        for i in 0..<100 {
            _ = try machine.call("add", .int(Int64(i)), 1)
            _ = try machine.call("reverse", "abcdef")
            _ = try machine.call("greet", "heap")
            _ = try? machine.call("fail")
        }
        #expect(try machine.call("heap") == .int(Int64(Self.area)))
    }

    @Test("calls, then reset to the ready point, again and again; the snapshot serves calls from a file too")
    func callsWithReset() throws {
        let machine = try ready(resettable: true)
        let seen = registerLog(machine)
        for i in Int64(0)..<25 {
            #expect(try machine.call("add", .int(i), 1) == .int(i + 1))
            #expect(try machine.call("reverse", .string("round \(i)")) == .string(String("round \(i)".reversed())))
            #expect(try machine.call("greet", .string("#\(i)")) == 42)
            #expect(throws: CallError.guestError(status: 7)) { try machine.call("fail") }
            #expect(try machine.call("nothing") == CallValue.none)
            #expect(try machine.call("heap") == .int(Int64(Self.area)))
            try machine.reset()
        }
        #expect(seen.calls == (0..<25).map { [.string("hello, #\($0)!")] })
        // The host functions belong to the machine, not to its memory: still there after the resets.
        #expect(try machine.call("greet", "after") == 42)

        let snapshot = try #require(machine.resetPoint)
        let path = temporaryPath("callee64.snap")
        defer { unlink(path) }
        try snapshot.write(to: path)
        let restored = try Machine(restoring: try Snapshot(contentsOf: path))
        #expect(restored.exportedFunctions == Self.exports)
        #expect(try restored.call("reverse", "restored") == "derotser")
        #expect(throws: CallError.guestError(status: 101)) { try restored.call("greet", "no log here") }
    }
}
