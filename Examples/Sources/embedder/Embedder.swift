// An embedder of MicroVM: what a program that uses the library does, start to finish.
//
// It boots Guests/calls64.bin (a guest that exports functions), serves it a host function, calls it ten
// thousand times, recovers from a fault and a timeout with reset(), restores a second machine from the same
// snapshot, calls from async code through an AsyncMachine, and attaches a port device of its own to another
// guest. Every result is checked; the exit status is 0 only if every check passed.
//
//     swift run --package-path Examples embedder [path/to/calls64.bin]

import Foundation
import MicroVM
import Synchronization

/// Counts the checks the example makes and remembers the ones that failed.
struct Checks {
    private(set) var passed = 0
    private(set) var failures: [String] = []

    mutating func expect(_ condition: Bool, _ what: @autoclosure () -> String) {
        if condition {
            passed += 1
        } else {
            failures.append(what())
            print("  CHECK FAILED: \(what())")
        }
    }
}

/// A device of the embedder's own: a POST-code port, which keeps every byte the guest writes to it.
final class PostCodePort: PortDevice {
    private(set) var codes: [UInt8] = []

    func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse {
        codes.append(UInt8(truncatingIfNeeded: value))
        return .resume  // the guest carries on; `.stop(outcome)` would end the run here
    }
    // No `read(port:size:machine:)`: the default treats a read as an unknown port, which ends the run.
}

/// `12.3 us`, `4.5 ms`: a duration for a person.
func describe(_ duration: Duration) -> String {
    let nanoseconds = Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9
    if nanoseconds < 1e6 { return String(format: "%.1f us", nanoseconds / 1e3) }
    return String(format: "%.1f ms", nanoseconds / 1e6)
}

/// Where the committed guests are: `Guests/` of the checkout this file is in.
let guestsDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // embedder
    .deletingLastPathComponent()  // Sources
    .deletingLastPathComponent()  // Examples
    .deletingLastPathComponent()  // the checkout
    .appendingPathComponent("Guests").path

/// The bytes of a guest file, or the reason it could not be read.
func readGuest(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else {
        throw ExampleError("cannot read the guest '\(path)' (give the path to calls64.bin as the argument)")
    }
    return [UInt8](data)
}

struct ExampleError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@main
struct Embedder {
    static func main() async {
        var checks = Checks()
        do {
            try await run(&checks)
        } catch {
            checks.expect(false, "the example stopped early: \(error)")
        }
        if checks.failures.isEmpty {
            print("all \(checks.passed) checks passed")
            exit(0)
        }
        print("\(checks.failures.count) of \(checks.passed + checks.failures.count) checks failed")
        exit(1)
    }

    static func run(_ checks: inout Checks) async throws {
        let path = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "\(guestsDirectory)/calls64.bin"
        let image = try readGuest(path)
        print("guest: \(path) (\(image.count) bytes)")

        // 1. Describe the machine. Resettable: KVM tracks the pages the guest writes, so reset() can put back
        //    just those. The timeout applies to each run and to each call.
        var configuration = MachineConfiguration(architecture: .amd64, image: image)
        configuration.memorySize = 16 << 20
        configuration.resettable = true
        configuration.timeout = .milliseconds(250)
        configuration.console = .capture(limit: 4096)

        // 2. Build it and run it to its ready point: the guest announces its exports with hypercall 6.
        let clock = ContinuousClock()
        var started = clock.now
        let machine = try Machine(configuration: configuration)
        let outcome = try machine.run()
        checks.expect(outcome == .ready, "the guest ends its first run ready for calls (got \(outcome))")
        print("booted to the ready point in \(describe(clock.now - started)); exports: \(machine.exportedFunctions.joined(separator: ", "))")
        checks.expect(
            machine.exportedFunctions == ["add", "upper", "shout", "fail", "crash", "spin", "nothing"],
            "the guest exports its seven functions")

        // 3. Snapshot the ready point: a resettable machine makes its snapshot its reset point.
        started = clock.now
        let ready = try machine.snapshot()
        print("snapshot of the ready point in \(describe(clock.now - started)): \(ready.storedBytes >> 10) KiB of \(ready.memorySize >> 20) MiB hold data")

        // 4. A host function the guest can call by name (the guest's `shout` calls "log").
        let logged = Mutex<[String]>([])
        machine.register("log") { _, arguments in
            let text = arguments.first?.string ?? ""
            logged.withLock { $0.append(text) }
            return .int(Int64(text.utf8.count))
        }

        // 5. Ten thousand calls, resolved by name once and called by index.
        let add = try machine.function("add")
        let count = 10_000
        var wrong = 0
        started = clock.now
        for i in 0..<Int64(count) {
            let (a, b) = (i &* 7919, 1 - i)
            if try machine.call(add, [.int(a), .int(b)]) != .int(a &+ b) { wrong += 1 }
        }
        let elapsed = clock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        checks.expect(wrong == 0, "every add result is right (\(wrong) of \(count) were not)")
        print("add: \(count) calls, every result checked, in \(describe(elapsed)): \(Int(Double(count) / seconds)) calls/s, \(describe(elapsed / count)) per call")
        started = clock.now
        try machine.reset()  // back to the ready point: only the pages written since are copied back
        print("reset() to the ready point after those calls: \(describe(clock.now - started))")

        // 6. Strings in, strings out; and a guest function that calls the host back.
        let upper = try machine.call("upper", "hello, world")
        checks.expect(upper == "HELLO, WORLD", "upper uppercases (got \(upper))")
        print("upper(\"hello, world\") -> \(upper)")
        let shout = try machine.call("shout", "hello from the host")
        checks.expect(shout == .int(20), "shout returns what log returned plus one (got \(shout))")
        checks.expect(logged.withLock { $0 } == ["hello from the host"], "log saw shout's argument once")
        print("shout(\"hello from the host\") -> \(shout); the host function log saw \(logged.withLock { $0 })")

        // 7. A guest fault is data: the call throws CallError.run(.fault(GuestFault)).
        do {
            _ = try machine.call("crash")
            checks.expect(false, "crash() faults")
        } catch .run(.fault(let fault)) {
            checks.expect(fault.kind == .tripleFault && fault.cr2 == 0x4000_0000, "crash() triple-faults on 0x40000000")
            print("crash() -> fault: \(fault)")
        } catch {
            checks.expect(false, "crash() faults (got \(error))")
        }
        try recover(machine, &checks, clock: clock)

        // 8. A call that never returns ends at the timeout, typed too.
        do {
            _ = try machine.call("spin")
            checks.expect(false, "spin() times out")
        } catch .run(let error) {
            if case .timeout(let seconds, _, _) = error {
                checks.expect(seconds == 0.25, "spin() times out after the configured 250 ms")
            } else {
                checks.expect(false, "spin() times out (got \(error))")
            }
            print("spin() -> \(error)")
        } catch {
            checks.expect(false, "spin() times out (got \(error))")
        }
        try recover(machine, &checks, clock: clock)

        // 9. A guest error status is not a fault: the machine carries on.
        do {
            _ = try machine.call("fail")
            checks.expect(false, "fail() reports its status")
        } catch .guestError(let status) {
            checks.expect(status == 7, "fail() returns status 7")
            print("fail() -> guest error status \(status); the machine still serves calls")
        } catch {
            checks.expect(false, "fail() reports its status (got \(error))")
        }

        // 10. Any number of machines restore from one snapshot and share the pages none of them writes.
        started = clock.now
        let second = try Machine(restoring: ready)
        let restored = try second.call("upper", "restored")
        checks.expect(restored == "RESTORED", "a machine restored from the snapshot serves calls")
        print("a second machine restored from the snapshot in \(describe(clock.now - started)): upper(\"restored\") -> \(restored)")

        try await asyncCalls(configuration, &checks)
        try portDevice(&checks)
    }

    /// What a fault or a timeout leaves behind: a machine that refuses to run until it is reset.
    static func recover(_ machine: Machine, _ checks: inout Checks, clock: ContinuousClock) throws {
        do {
            _ = try machine.call("add", 1, 2)
            checks.expect(false, "the machine refuses calls until it is reset")
        } catch .run(.needsReset) {
            checks.expect(true, "the machine refuses calls until it is reset")
        }
        let started = clock.now
        try machine.reset()
        let took = clock.now - started
        let sum = try machine.call("add", 20, 22)
        checks.expect(sum == 42, "after reset() the machine serves calls (add(20, 22) = \(sum))")
        print("  refused calls until reset(), which took \(describe(took)); then add(20, 22) -> \(sum)")
    }

    /// The same guest from async code: an AsyncMachine runs on a thread of its own, and can be interrupted
    /// from any task.
    static func asyncCalls(_ configuration: MachineConfiguration, _ checks: inout Checks) async throws {
        var configuration = configuration
        configuration.timeout = .seconds(10)  // the interruption below, not the timeout, ends spin()
        let vm = try await AsyncMachine(configuration: configuration)
        let outcome = try await vm.run()
        checks.expect(outcome == .ready, "the async machine boots to its ready point")
        _ = try await vm.snapshot()
        let sum = try await vm.call("add", 40, 2)
        checks.expect(sum == 42, "add(40, 2) from async code")
        let stopper = Task {
            try await Task.sleep(for: .milliseconds(50))
            vm.interrupt()
        }
        do {
            _ = try await vm.call("spin")
            checks.expect(false, "spin() is interrupted")
        } catch .run(.interrupted) {
            checks.expect(true, "spin() is interrupted")
        }
        try await stopper.value
        try await vm.reset()
        let again = try await vm.call("add", 1, 1)
        checks.expect(again == 2, "the async machine serves calls after reset()")
        print("AsyncMachine: add(40, 2) -> \(sum) from async code; spin() interrupted from a task; after reset() add(1, 1) -> \(again)")
    }

    /// A device the embedder attaches: port64 prints, writes 0x11 to port 0x80, then halts. Without a device
    /// there, that write would end the run as an unknown port.
    static func portDevice(_ checks: inout Checks) throws {
        var configuration = MachineConfiguration(architecture: .amd64, image: try readGuest("\(guestsDirectory)/port64.bin"))
        let printed = Mutex<[UInt8]>([])
        configuration.console = .sink { bytes in printed.withLock { $0 += bytes } }
        let machine = try Machine(configuration: configuration)
        let device = PostCodePort()
        try machine.attach(device, ports: 0x80...0x80)
        let outcome = try machine.run()
        let text = String(decoding: printed.withLock { $0 }, as: UTF8.self)
        checks.expect(outcome == .halted, "port64 halts once its port write is served (got \(outcome))")
        checks.expect(device.codes == [0x11], "the device saw the guest's write of 0x11")
        checks.expect(text == "port\n", "the console sink got the guest's line")
        print("port device at 0x80: the guest printed \(text.debugDescription), wrote \(device.codes.map { "0x" + String($0, radix: 16) }.joined(separator: ", ")) to it, then halted")
    }
}
