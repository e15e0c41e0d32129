import CBaseline
@preconcurrency import Glibc
import MicroVM
import PageTables

/// Reuse: resetting a machine to a snapshot and running it again, next to the C reference doing the same
/// cycle at the KVM floor (Sources/CBaseline/reset.c), and what restoring and snapshotting cost.
///
/// - reset: reset + run to HLT of dirty64 (which writes N pages), N = 1 / 16 / 256, RAM 16 MiB / 256 MiB /
///   1 GiB; per cycle. C plain (no timer) and C with a per-run timer, as microvm arms one for its timeout and
///   dirty-ring tick.
/// - reset-rate: reset cycles per second (one dirty page), one machine per thread, 1 and 2 threads.
/// - restore: a 64 MiB snapshot file loaded and restored into a new machine, run to HLT; against booting the
///   same guest fresh.
/// - snapshot: capturing a 64 MiB machine (a quarter of its RAM written) into a snapshot.
/// - restored-memory: resident memory of 100 machines restored from one snapshot, against 100 fresh boots.
enum ResetBench {
    /// dirty64 with its page count patched in (the quadword at image offset 8).
    static func dirtyImage(_ base: [UInt8], pages: Int) -> [UInt8] {
        var image = base
        for byte in 0..<8 { image[8 + byte] = UInt8(truncatingIfNeeded: UInt64(pages) >> (8 * UInt64(byte))) }
        return image
    }

    static func resettableMachine(_ image: [UInt8], memory: UInt64, host: KVMHost) -> Machine {
        var configuration = MachineBench.makeConfiguration(image)
        configuration.memorySize = memory
        configuration.resettable = true
        configuration.timeout = nil
        do {
            let machine = try Machine(configuration: configuration, host: host)
            _ = try machine.snapshot()
            return machine
        } catch {
            Harness.fail("cannot build a resettable machine: \(error)")
        }
    }

    static func swiftCycle(_ machine: Machine) {
        do {
            try machine.reset()
            guard try machine.run() == .halted else { Harness.fail("dirty64 did not halt") }
        } catch {
            Harness.fail("reset cycle failed: \(error)")
        }
    }

    static func cCycle(_ reset: OpaquePointer) {
        guard cb_reset_cycle(reset, nil) == 0 else { Harness.fail("C reset cycle failed") }
    }

    static func makeC(_ image: [UInt8], memory: UInt64, timer: Bool) -> OpaquePointer {
        var error = [CChar](repeating: 0, count: 256)
        let made = image.withUnsafeBytes {
            cb_reset_create($0.baseAddress, $0.count, memory, timer ? 1 : 0, &error, error.count)
        }
        guard let made else { Harness.fail("C reset host: \(cString(error))") }
        return made
    }

    // MARK: reset

    static func reset(guests: String) {
        let base = readFile(guests + "/dirty64.bin")
        let host = MachineBench.makeHost()
        let quick = Harness.quick
        let sizes: [UInt64] = quick ? [16 << 20] : [16 << 20, 256 << 20, 1 << 30]
        let counts = quick ? [1, 16] : [1, 16, 256]
        for memory in sizes {
            for pages in counts {
                let image = dirtyImage(base, pages: pages)
                let machine = resettableMachine(image, memory: memory, host: host)
                let plain = makeC(image, memory: memory, timer: false)
                let timed = makeC(image, memory: memory, timer: true)
                defer {
                    cb_reset_destroy(plain)
                    cb_reset_destroy(timed)
                }
                // Cycles per sample: enough that a sample lasts about a millisecond.
                let batch = max(1, 100 / pages)
                let runs = Harness.runs(201, quick: 21)
                Harness.progress("reset: \(pages) dirty pages, \(memory >> 20) MiB RAM, \(runs) x \(batch) cycles each")
                for _ in 0..<20 {
                    swiftCycle(machine)
                    cCycle(plain)
                    cCycle(timed)
                }
                let samples = Harness.interleaved(
                    runs: runs, batch: batch, [{ swiftCycle(machine) }, { cCycle(plain) }, { cCycle(timed) }])
                let name = "\(pages)p/\(memory >> 20)M"
                for (impl, times) in zip(["swift", "c", "c-timer"], samples) {
                    Harness.emit(
                        group: "reset", case: name, impl: impl, param: String(memory), unit: "ns", Harness.summarize(times))
                }
            }
        }
        if !quick { flatness(base, host: host) }
    }

    /// Whether a reset costs the same at 16 MiB and at 1 GiB of RAM: one dirty page, both sizes (and the C
    /// reference at both) measured in one interleaved loop. The cells above are measured a minute apart,
    /// and this host's KVM drifts by more than the 10 % the comparison is about over a minute.
    static func flatness(_ base: [UInt8], host: KVMHost) {
        let image = dirtyImage(base, pages: 1)
        let sizes: [UInt64] = [16 << 20, 1 << 30]
        let machines = sizes.map { resettableMachine(image, memory: $0, host: host) }
        let references = sizes.map { makeC(image, memory: $0, timer: false) }
        defer { references.forEach { cb_reset_destroy($0) } }
        let batch = 100
        let runs = Harness.runs(201, quick: 21)
        Harness.progress("reset: 1 dirty page, 16 MiB and 1 GiB RAM interleaved, \(runs) x \(batch) cycles each")
        for _ in 0..<20 {
            machines.forEach { swiftCycle($0) }
            references.forEach { cCycle($0) }
        }
        // samples[i]: machines[0], machines[1], references[0], references[1]
        let samples = Harness.interleaved(
            runs: runs, batch: batch,
            machines.map { machine in { swiftCycle(machine) } } + references.map { reference in { cCycle(reference) } })
        for (index, memory) in sizes.enumerated() {
            let name = "1p/\(memory >> 20)M/interleaved"
            Harness.emit(
                group: "reset", case: name, impl: "swift", param: String(memory), unit: "ns",
                Harness.summarize(samples[index]))
            Harness.emit(
                group: "reset", case: name, impl: "c", param: String(memory), unit: "ns",
                Harness.summarize(samples[2 + index]))
        }
    }

    // MARK: reset-rate

    static func rate(guests: String) {
        let image = dirtyImage(readFile(guests + "/dirty64.bin"), pages: 1)
        let host = MachineBench.makeHost()
        let seconds = Harness.quick ? 0.3 : 1.0
        for threads in [1, 2] {
            let perSecond = operationsPerSecond(threads: threads, seconds: seconds) { _ in
                let machine = resettableMachine(image, memory: 16 << 20, host: host)
                return { swiftCycle(machine) }
            }
            Harness.emit(
                group: "reset-rate", case: "\(threads) thread\(threads == 1 ? "" : "s")", impl: "swift", unit: "ops/s",
                Harness.Summary(median: perSecond, min: perSecond, max: perSecond, runs: 1))
        }
    }

    // MARK: restore and snapshot

    static func restore(guests: String) {
        let hello = readFile(guests + "/hello64.bin")
        let host = MachineBench.makeHost()
        var configuration = MachineBench.makeConfiguration(hello)
        configuration.memorySize = 64 << 20
        let path = "/tmp/microvm-bench-\(getpid()).snap"
        defer { unlink(path) }
        do {
            // The snapshot is taken before the first instruction, so both sides run the same guest from boot.
            let machine = try Machine(configuration: configuration, host: host)
            try machine.snapshot().write(to: path)
        } catch {
            Harness.fail("cannot save the restore snapshot: \(error)")
        }
        let runs = Harness.runs(201, quick: 21)
        Harness.progress("restore: \(runs) runs each of restore-from-file and fresh boot, 64 MiB")
        var restored: [Double] = [], fresh: [Double] = []
        for round in 0..<(runs + 10) {
            for k in 0..<2 {
                let start = Harness.now()
                do {
                    if (round + k) % 2 == 0 {
                        let machine = try Machine(restoring: try Snapshot(contentsOf: path), host: host)
                        guard try machine.run() == .halted else { Harness.fail("restored guest did not halt") }
                    } else {
                        let machine = try Machine(configuration: configuration, host: host)
                        guard try machine.run() == .halted else { Harness.fail("guest did not halt") }
                    }
                } catch {
                    Harness.fail("restore round failed: \(error)")
                }
                let time = Double(Harness.now() - start)
                Machine.waitForTeardown()
                guard round >= 10 else { continue }  // warm-up
                if (round + k) % 2 == 0 { restored.append(time) } else { fresh.append(time) }
            }
        }
        Harness.emit(group: "restore", case: "64M/from-file", impl: "swift", unit: "ns", Harness.summarize(restored))
        Harness.emit(group: "restore", case: "64M/fresh-boot", impl: "swift", unit: "ns", Harness.summarize(fresh))
    }

    static func snapshot(guests: String) {
        let image = dirtyImage(readFile(guests + "/dirty64.bin"), pages: 4096)  // 16 MiB of the 64 written
        let host = MachineBench.makeHost()
        var configuration = MachineBench.makeConfiguration(image)
        configuration.memorySize = 64 << 20
        configuration.timeout = nil
        let runs = Harness.runs(31, quick: 5)
        Harness.progress("snapshot: \(runs) captures of a 64 MiB machine with 16 MiB written")
        var times: [Double] = []
        var compacted: UInt64 = 0
        for _ in 0..<runs {
            do {
                let machine = try Machine(configuration: configuration, host: host)
                _ = try machine.run()
                let start = Harness.now()
                let snapshot = try machine.snapshot()
                times.append(Double(Harness.now() - start))
                compacted = snapshot.storedBytes
            } catch {
                Harness.fail("snapshot failed: \(error)")
            }
            Machine.waitForTeardown()
        }
        Harness.emit(
            group: "snapshot", case: "64M/capture", impl: "swift", unit: "ns", Harness.summarize(times),
            note: "stored \(compacted >> 10) KiB of 65536 KiB")
    }

    static func restoredMemory(guests: String) {
        let hello = readFile(guests + "/hello64.bin")
        let host = MachineBench.makeHost()
        var configuration = MachineBench.makeConfiguration(hello)
        configuration.memorySize = 16 << 20
        let count = Harness.quick ? 20 : 100
        func resident(_ make: () throws -> Machine) -> Double {
            Machine.waitForTeardown()
            let before = cb_resident_bytes()
            var machines: [Machine] = []
            do {
                for _ in 0..<count {
                    let machine = try make()
                    guard try machine.run() == .halted else { Harness.fail("guest did not halt") }
                    machines.append(machine)
                }
            } catch {
                Harness.fail("memory round failed: \(error)")
            }
            let after = cb_resident_bytes()
            withExtendedLifetime(machines) {}
            return Double(after &- before) / Double(count)
        }
        do {
            let snapshot = try Machine(configuration: configuration, host: host).snapshot()
            let restored = resident { try Machine(restoring: snapshot, host: host) }
            let fresh = resident { try Machine(configuration: configuration, host: host) }
            Harness.emit(
                group: "restored-memory", case: "per machine/restored", impl: "swift", unit: "bytes",
                Harness.Summary(median: restored, min: restored, max: restored, runs: count))
            Harness.emit(
                group: "restored-memory", case: "per machine/fresh", impl: "swift", unit: "bytes",
                Harness.Summary(median: fresh, min: fresh, max: fresh, runs: count))
        } catch {
            Harness.fail("restored-memory failed: \(error)")
        }
    }
}
