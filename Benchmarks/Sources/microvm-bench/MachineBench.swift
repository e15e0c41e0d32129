import CBaseline
@preconcurrency import Glibc
import MicroVM
import PageTables

/// Whole machines on real KVM, `Machine` vs the minimal C host (Sources/CBaseline/khost.c), side by side.
///
/// - boot: create -> run to HLT -> teardown of hello64, in process. `shared-host` passes one `KVMHost`
///   (the open /dev/kvm and its supported CPUID) to every machine, as the C host keeps its /dev/kvm and
///   CPUID for the process; `own-host` is `Machine(configuration:)` alone, which opens /dev/kvm and reads the
///   CPUID again per machine (what the CLI does once per process). i686 is tried and reported n/a when the
///   KVM cannot run 32-bit paging.
/// - exits: outloop64 (100,000 OUTs to the console port, console discarded), only `run()` timed; per exit.
/// - rate: machines created, run to HLT and destroyed per second, on 1 and 2 threads.
/// - memory: resident bytes per idle 16 MiB machine (N machines booted to HLT and kept).
enum MachineBench {
    static func makeConfiguration(_ image: [UInt8], architecture: Architecture = .amd64) -> MachineConfiguration {
        var configuration = MachineConfiguration(architecture: architecture, image: image)
        configuration.console = .discard
        return configuration
    }

    static func makeHost() -> KVMHost {
        do { return try KVMHost() } catch { Harness.fail("cannot open KVM: \(error)") }
    }

    /// create -> run -> teardown with microvm; returns ns.
    @inline(never)
    /// `synchronous`: wait for the reaper to finish the VM's teardown inside the timed region (the same
    /// work the C host does inline), instead of leaving it off the critical path as the product does.
    static func bootSwift(_ configuration: MachineConfiguration, host: KVMHost?, synchronous: Bool = false) -> Double {
        let start = Harness.now()
        do {
            let machine = try Machine(configuration: configuration, host: host)
            let outcome = try machine.run()
            guard outcome == .halted else { Harness.fail("guest did not halt: \(outcome)") }
        } catch {
            Harness.fail("boot failed: \(error)")
        }
        if synchronous { Machine.waitForTeardown() }
        let end = Harness.now()
        return Double(end - start)
    }

    /// create -> run -> teardown with the C host; returns ns.
    @inline(never)
    static func bootC(_ image: [UInt8]) -> Double {
        var error = [CChar](repeating: 0, count: 256)
        let start = Harness.now()
        let status = image.withUnsafeBytes {
            cb_boot($0.baseAddress, $0.count, Layout.defaultMemorySize, &error, error.count)
        }
        let end = Harness.now()
        guard status == 0 else { Harness.fail("C host failed: \(status) \(cString(error))") }
        return Double(end - start)
    }

    // MARK: boot

    static func boot(guests: String) {
        let hello = readFile(guests + "/hello64.bin")
        let configuration = makeConfiguration(hello)
        let host = makeHost()
        let runs = Harness.runs(301, quick: 31)
        Harness.progress("boot: \(runs) runs each of microvm (shared host), microvm (own host), C host")
        for _ in 0..<20 {  // warm-up
            _ = bootSwift(configuration, host: host)
            _ = bootSwift(configuration, host: nil)
            _ = bootC(hello)
        }
        var shared: [Double] = [], own: [Double] = [], sync: [Double] = [], c: [Double] = []
        for i in 0..<runs {
            // Rotate the order so no variant always follows the same one.
            for k in 0..<4 {
                switch (i + k) % 4 {
                case 0: shared.append(bootSwift(configuration, host: host))
                case 1: own.append(bootSwift(configuration, host: nil))
                case 2: sync.append(bootSwift(configuration, host: host, synchronous: true))
                default: c.append(bootC(hello))
                }
            }
            Machine.waitForTeardown()  // no variant inherits another's pending teardown
        }
        Harness.emit(group: "boot", case: "amd64/shared-host", impl: "swift", unit: "ns", Harness.summarize(shared))
        Harness.emit(group: "boot", case: "amd64/own-host", impl: "swift", unit: "ns", Harness.summarize(own))
        Harness.emit(group: "boot", case: "amd64/sync-teardown", impl: "swift", unit: "ns", Harness.summarize(sync))
        Harness.emit(group: "boot", case: "amd64", impl: "c", unit: "ns", Harness.summarize(c))

        // i686: only where the KVM runs 32-bit paging.
        let hello32 = readFile(guests + "/hello32.bin")
        do {
            let machine = try Machine(configuration: makeConfiguration(hello32, architecture: .i686), host: host)
            _ = try machine.run()
            var times: [Double] = []
            let i686 = makeConfiguration(hello32, architecture: .i686)
            for _ in 0..<runs { times.append(bootSwift(i686, host: host)) }
            Harness.emit(group: "boot", case: "i686/shared-host", impl: "swift", unit: "ns", Harness.summarize(times))
        } catch {
            let reason =
                access("/sys/module/kvm_pvm", F_OK) == 0
                ? "n/a: kvm_pvm has no 32-bit paging" : "n/a: \(error)"
            Harness.emitUnavailable(group: "boot", case: "i686/shared-host", impl: "swift", reason: reason)
        }
    }

    // MARK: exits

    static let outloopExits = 100_000

    static func exits(guests: String) {
        let image = readFile(guests + "/outloop64.bin")
        let configuration = makeConfiguration(image)
        let host = makeHost()
        let runs = Harness.runs(9, quick: 3)
        Harness.progress("exits: \(runs) runs each of \(outloopExits) OUT exits, microvm and C host")

        func swiftRun() -> Double {
            do {
                let machine = try Machine(configuration: configuration, host: host)
                let start = Harness.now()
                let outcome = try machine.run()
                let end = Harness.now()
                guard outcome == .halted, machine.exitCount == outloopExits + 1 else {
                    Harness.fail("outloop64: \(outcome) after \(machine.exitCount) exits")
                }
                return Double(end - start) / Double(outloopExits)
            } catch {
                Harness.fail("outloop64 failed: \(error)")
            }
        }
        func cRun() -> Double {
            var error = [CChar](repeating: 0, count: 256)
            let vm = image.withUnsafeBytes {
                cb_vm_create($0.baseAddress, $0.count, Layout.defaultMemorySize, &error, error.count)
            }
            guard let vm else { Harness.fail("C host: \(cString(error))") }
            defer { cb_vm_destroy(vm) }
            var count: UInt64 = 0
            let start = Harness.now()
            let status = cb_vm_run(vm, Int32(CB_CONSOLE_DISCARD), &count, &error, error.count)
            let end = Harness.now()
            guard status == 0, count == UInt64(outloopExits + 1) else {
                Harness.fail("C outloop: \(status), \(count) exits")
            }
            return Double(end - start) / Double(outloopExits)
        }
        _ = swiftRun()
        _ = cRun()
        var swift: [Double] = [], c: [Double] = []
        for i in 0..<runs {
            if i % 2 == 0 {
                swift.append(swiftRun())
                c.append(cRun())
            } else {
                c.append(cRun())
                swift.append(swiftRun())
            }
        }
        Harness.emit(
            group: "exits", case: "amd64/out", impl: "swift", unit: "ns", Harness.summarize(swift),
            note: "per exit, \(outloopExits) exits per run")
        Harness.emit(
            group: "exits", case: "amd64/out", impl: "c", unit: "ns", Harness.summarize(c),
            note: "per exit, \(outloopExits) exits per run")
    }

    // MARK: rate

    static func rate(guests: String) {
        let hello = readFile(guests + "/hello64.bin")
        let perThread = Harness.runs(400, quick: 100)
        let reps = Harness.quick ? 3 : 7
        for threads in [1, 2] {
            Harness.progress("rate: \(threads) thread(s) x \(perThread) machines, \(reps) repetitions")
            var swift: [Double] = [], c: [Double] = []
            for rep in 0...reps {
                let swiftRate = measureRate(threads: threads, perThread: perThread) { _ in
                    let host = makeHost()
                    let configuration = makeConfiguration(hello)
                    return { _ = bootSwift(configuration, host: host) }
                }
                let cRate = measureRate(threads: threads, perThread: perThread) { _ in
                    { _ = bootC(hello) }
                }
                if rep > 0 {  // the first repetition warms up
                    swift.append(swiftRate)
                    c.append(cRate)
                }
            }
            let name = "amd64/\(threads)-thread\(threads == 1 ? "" : "s")"
            Harness.emit(
                group: "rate", case: name, impl: "swift", unit: "ops/s", Harness.summarize(swift),
                note: "\(threads * perThread) machines per repetition")
            Harness.emit(
                group: "rate", case: name, impl: "c", unit: "ops/s", Harness.summarize(c),
                note: "\(threads * perThread) machines per repetition")
        }
    }

    /// Machines per second: `threads` threads each run `perThread` boots; `setUp` runs on each thread first
    /// (outside the timed region) and returns that thread's boot.
    static func measureRate(
        threads: Int, perThread: Int, setUp: @escaping @Sendable (Int) -> () -> Void
    ) -> Double {
        final class Gate: @unchecked Sendable {  // a start barrier; fields guarded by the mutex
            var mutex = pthread_mutex_t()
            var condition = pthread_cond_t()
            var ready = 0
            var go = false
            var start: UInt64 = 0
            init() {
                pthread_mutex_init(&mutex, nil)
                pthread_cond_init(&condition, nil)
            }
        }
        let gate = Gate()
        let total = threads
        runOnThreads(threads) { index in
            let boot = setUp(index)
            pthread_mutex_lock(&gate.mutex)
            gate.ready += 1
            if gate.ready == total {
                gate.go = true
                gate.start = Harness.now()
                pthread_cond_broadcast(&gate.condition)
            }
            while !gate.go { pthread_cond_wait(&gate.condition, &gate.mutex) }
            pthread_mutex_unlock(&gate.mutex)
            for _ in 0..<perThread { boot() }
        }
        let end = Harness.now()
        return Double(threads * perThread) * 1e9 / Double(end - gate.start)
    }

    // MARK: memory

    static func memory(guests: String) {
        let hello = readFile(guests + "/hello64.bin")
        let count = Harness.runs(100, quick: 25)
        let reps = Harness.quick ? 2 : 5
        let host = makeHost()
        let configuration = makeConfiguration(hello)
        Harness.progress("memory: \(count) idle 16 MiB machines kept, \(reps) repetitions")
        _ = bootSwift(configuration, host: host)
        _ = bootC(hello)
        var swift: [Double] = [], c: [Double] = []
        for _ in 0..<reps {
            do {
                var machines: [Machine] = []
                machines.reserveCapacity(count)
                let before = cb_resident_bytes()
                for _ in 0..<count {
                    let machine = try Machine(configuration: configuration, host: host)
                    _ = try machine.run()
                    machines.append(machine)
                }
                let after = cb_resident_bytes()
                swift.append(Double(Int64(after) - Int64(before)) / Double(count))
                blackHole(machines)
            } catch {
                Harness.fail("memory: \(error)")
            }
            var vms: [OpaquePointer] = []
            vms.reserveCapacity(count)
            var error = [CChar](repeating: 0, count: 256)
            let before = cb_resident_bytes()
            for _ in 0..<count {
                let vm = hello.withUnsafeBytes {
                    cb_vm_create($0.baseAddress, $0.count, Layout.defaultMemorySize, &error, error.count)
                }
                guard let vm else { Harness.fail("C host: \(cString(error))") }
                _ = cb_vm_run(vm, Int32(CB_CONSOLE_DISCARD), nil, &error, error.count)
                vms.append(vm)
            }
            let after = cb_resident_bytes()
            c.append(Double(Int64(after) - Int64(before)) / Double(count))
            for vm in vms { cb_vm_destroy(vm) }
        }
        Harness.emit(
            group: "memory", case: "amd64/idle-16MiB", impl: "swift", unit: "bytes", Harness.summarize(swift),
            note: "\(count) machines booted to HLT and kept")
        Harness.emit(
            group: "memory", case: "amd64/idle-16MiB", impl: "c", unit: "bytes", Harness.summarize(c),
            note: "\(count) machines booted to HLT and kept")
    }
}

/// The text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

extension MachineBench {
    /// Records when the first console byte arrives (the built-in console port replaced).
    final class FirstByte: PortDevice {
        var at: UInt64 = 0
        func write(port: UInt16, size: Int, value: UInt32, machine: Machine) throws -> DeviceResponse {
            if at == 0 { at = Harness.now() }
            return .resume
        }
    }

    /// Boot to the first console byte: a guest in Embedded Swift (swifthello64) against the assembly hello64,
    /// from `Machine(configuration:)` to the first `out` the console port sees, and from `run()` to it.
    static func firstByte(guests: String) {
        let host = makeHost()
        let images = [
            ("hello64", readFile(guests + "/hello64.bin")), ("swifthello64", readFile(guests + "/swifthello64.bin")),
        ]
        let runs = Harness.runs(301, quick: 31)
        Harness.progress("first-byte: \(runs) boots each of hello64 and swifthello64")
        var created: [[Double]] = [[], []], ran: [[Double]] = [[], []]
        for round in 0..<(runs + 10) {
            for k in 0..<2 {
                let which = (round + k) % 2
                let start = Harness.now()
                do {
                    let machine = try Machine(configuration: makeConfiguration(images[which].1), host: host)
                    let device = FirstByte()
                    machine.detachDevice(port: Layout.consolePort)
                    try machine.attach(device, ports: Layout.consolePort...Layout.consolePort)
                    let running = Harness.now()
                    guard try machine.run() == .halted, device.at != 0 else {
                        Harness.fail("\(images[which].0) did not print")
                    }
                    if round >= 10 {
                        created[which].append(Double(device.at - start))
                        ran[which].append(Double(device.at - running))
                    }
                } catch {
                    Harness.fail("first-byte boot failed: \(error)")
                }
                Machine.waitForTeardown()
            }
        }
        for (index, name) in ["asm", "swift"].enumerated() {
            Harness.emit(
                group: "first-byte", case: "create->byte", impl: name, unit: "ns", Harness.summarize(created[index]))
            Harness.emit(group: "first-byte", case: "run->byte", impl: name, unit: "ns", Harness.summarize(ran[index]))
        }
    }
}
