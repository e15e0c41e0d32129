import CBaseline
@preconcurrency import Glibc
import MicroVM
import PageTables

/// Calls across the boundary with calls64, next to the C host doing the same entries and exits
/// (Sources/CBaseline/calls.c).
///
/// - calls: host-to-guest round trip (`nothing`: one entry, one exit, 9 guest instructions), the same with
///   two integer arguments and a result (`add`), and a guest-to-host round trip inside a call (`shout`, whose
///   guest function calls the host's "log": two exits), per call.
/// - call-rate: calls per second of `nothing`, one machine per thread, 1 and 2 threads.
enum CallBench {
    static func readyMachine(_ image: [UInt8], host: KVMHost) -> Machine {
        var configuration = MachineBench.makeConfiguration(image)
        configuration.timeout = nil
        do {
            let machine = try Machine(configuration: configuration, host: host)
            guard try machine.run() == .ready else { Harness.fail("calls64 did not become ready") }
            machine.register("log") { _, _ in 41 }
            return machine
        } catch {
            Harness.fail("cannot boot calls64: \(error)")
        }
    }

    static func calls(guests: String) {
        let image = readFile(guests + "/calls64.bin")
        let host = MachineBench.makeHost()
        let machine = readyMachine(image, host: host)
        var error = [CChar](repeating: 0, count: 256)
        guard let c = image.withUnsafeBytes({ cb_calls_create($0.baseAddress, $0.count, &error, error.count) }) else {
            Harness.fail("C calls host: \(cString(error))")
        }
        defer { cb_calls_destroy(c) }
        let nothing: GuestFunction, add: GuestFunction, shout: GuestFunction
        do {
            nothing = try machine.function("nothing")
            add = try machine.function("add")
            shout = try machine.function("shout")
        } catch {
            Harness.fail("calls64 exports: \(error)")
        }
        let text = "hello"
        let batch = 50
        let runs = Harness.runs(201, quick: 21)
        Harness.progress("calls: \(runs) x \(batch) calls of nothing, add and shout, microvm and C")
        typealias Case = (name: String, swift: () -> Void, c: () -> Void)
        let cases: [Case] = [
            (
                "host->guest (nothing)",
                {
                    do { _ = try machine.call(nothing, []) } catch { Harness.fail("call failed: \(error)") }
                },
                { if cb_calls_nothing(c) != 0 { Harness.fail("C call failed") } }
            ),
            (
                "host->guest (add, 2 integers)",
                {
                    do {
                        guard try machine.call(add, [2, 3]) == 5 else { Harness.fail("add returned the wrong sum") }
                    } catch { Harness.fail("call failed: \(error)") }
                },
                { if cb_calls_add(c, 2, 3) != 5 { Harness.fail("C add failed") } }
            ),
            (
                "guest->host inside a call (shout)",
                {
                    do {
                        guard try machine.call(shout, [.string(text)]) == 42 else { Harness.fail("shout returned the wrong value") }
                    } catch { Harness.fail("call failed: \(error)") }
                },
                { if cb_calls_shout(c, text, text.utf8.count) != 42 { Harness.fail("C shout failed") } }
            ),
        ]
        for entry in cases {
            for _ in 0..<100 {
                entry.swift()
                entry.c()
            }
            let samples = Harness.interleaved(runs: runs, batch: batch, [entry.swift, entry.c])
            Harness.emit(group: "calls", case: entry.name, impl: "swift", unit: "ns", Harness.summarize(samples[0]))
            Harness.emit(group: "calls", case: entry.name, impl: "c", unit: "ns", Harness.summarize(samples[1]))
        }
    }

    static func rate(guests: String) {
        let image = readFile(guests + "/calls64.bin")
        let host = MachineBench.makeHost()
        let seconds = Harness.quick ? 0.3 : 1.0
        for threads in [1, 2] {
            let perSecond = operationsPerSecond(threads: threads, seconds: seconds) { _ in
                let machine = readyMachine(image, host: host)
                let nothing = try! machine.function("nothing")
                return {
                    do { _ = try machine.call(nothing, []) } catch { Harness.fail("call failed: \(error)") }
                }
            }
            Harness.emit(
                group: "call-rate", case: "\(threads) thread\(threads == 1 ? "" : "s")", impl: "swift", unit: "ops/s",
                Harness.Summary(median: perSecond, min: perSecond, max: perSecond, runs: 1))
        }
    }
}
