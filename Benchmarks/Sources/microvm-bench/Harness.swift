import CBaseline
@preconcurrency import Glibc

/// The harness: a monotonic clock, summary statistics and the one output format every group prints.
///
/// Output is TSV on stdout, one line per measured case (scripts/bench.sh collects it, Scripts/report.py
/// turns it into the table, the Markdown report and the plot):
///
///     group  case  impl  param  unit  median  min  max  runs  note
///
/// `impl` is `swift` (microvm's code), `c` (the C baseline) or a peer; `param` is the case's size in bytes
/// (page tables) or `-`; `unit` is `ns` (per operation), `ops/s`, `bytes` or `na` (not measurable here,
/// with the reason in `note`). Progress goes to stderr.
enum Harness {
    /// Fewer runs and smaller counts: a smoke test.
    nonisolated(unsafe) static var quick = false
    /// Overrides the number of timed samples per case.
    nonisolated(unsafe) static var runsOverride: Int? = nil
    /// Page-table groups: only this size / only cases whose name contains this text.
    nonisolated(unsafe) static var onlySize: UInt64? = nil
    nonisolated(unsafe) static var onlyCase: String? = nil

    /// Nanoseconds on CLOCK_MONOTONIC.
    @inline(__always) static func now() -> UInt64 { cb_now_ns() }

    /// Samples per case: `normal`, or `quick` with `--quick`, or `--runs`.
    static func runs(_ normal: Int, quick: Int) -> Int { runsOverride ?? (Self.quick ? quick : normal) }

    /// Times `cases` against each other: `runs` rounds, in each of which every case is timed over `batch`
    /// calls, in an order that rotates by one each round so that no case always follows the same one.
    /// Returns, for each case, its time per call (ns), one sample per round.
    static func interleaved(runs: Int, batch: Int, _ cases: [() -> Void]) -> [[Double]] {
        var samples = [[Double]](repeating: [], count: cases.count)
        for round in 0..<runs {
            for k in 0..<cases.count {
                let which = (round + k) % cases.count
                let start = now()
                for _ in 0..<batch { cases[which]() }
                samples[which].append(Double(now() - start) / Double(batch))
            }
        }
        return samples
    }

    struct Summary {
        var median: Double
        var min: Double
        var max: Double
        var runs: Int
    }

    static func summarize(_ samples: [Double]) -> Summary {
        precondition(!samples.isEmpty)
        let sorted = samples.sorted()
        let n = sorted.count
        let median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        return Summary(median: median, min: sorted[0], max: sorted[n - 1], runs: n)
    }

    /// Prints one result line (and flushes, so the script sees progress).
    static func emit(
        group: String, case name: String, impl: String, param: String = "-", unit: String, _ summary: Summary,
        note: String = ""
    ) {
        let line = [
            group, name, impl, param, unit, format(summary.median), format(summary.min), format(summary.max),
            String(summary.runs), note,
        ].joined(separator: "\t")
        print(line)
        fflush(stdout)
    }

    /// A line for a case that cannot be measured on this machine.
    static func emitUnavailable(group: String, case name: String, impl: String, reason: String) {
        print([group, name, impl, "-", "na", "-", "-", "-", "0", reason].joined(separator: "\t"))
        fflush(stdout)
    }

    static func progress(_ text: String) {
        writeAll(2, text + "\n")
    }

    static func format(_ value: Double) -> String {
        if value >= 100 || value == value.rounded() { return String(Int64(value.rounded())) }
        // Two decimals without Foundation.
        let scaled = Int64((value * 100).rounded())
        let whole = scaled / 100, frac = abs(scaled % 100)
        return "\(whole).\(frac < 10 ? "0" : "")\(frac)"
    }

    static func writeAll(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }

    static func fail(_ message: String) -> Never {
        writeAll(2, "microvm-bench: \(message)\n")
        exit(1)
    }
}

/// Keeps a value alive and opaque to the optimiser.
@inline(never) func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

/// Reads a whole file.
func readFile(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { Harness.fail("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            Harness.fail("cannot read \(path)")
        }
        if n == 0 { break }
        result += chunk[0..<n]
    }
    return result
}

/// Starts `count` threads running `body(index)` and waits for all of them.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Start: @unchecked Sendable {  // handed to exactly one thread, which consumes it
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    var threads: [pthread_t] = []
    for index in 0..<count {
        let start = Unmanaged.passRetained(Start { body(index) }).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<Start>.fromOpaque(context!).takeRetainedValue().body()
                return nil
            }, start)
        if rc != 0 { Harness.fail("pthread_create failed: \(rc)") }
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}

/// Operations per second, summed over `threads` threads that each repeat their own operation for `seconds`.
/// `makeOperation(index)` runs first on thread `index`, untimed, and returns what one operation does there.
func operationsPerSecond(
    threads: Int, seconds: Double, _ makeOperation: @escaping @Sendable (Int) -> () -> Void
) -> Double {
    final class Counter: @unchecked Sendable {  // each thread writes its own slot, read after join
        var counts: [Int]
        init(_ threads: Int) { counts = [Int](repeating: 0, count: threads) }
    }
    let counter = Counter(threads)
    runOnThreads(threads) { index in
        let operation = makeOperation(index)
        let end = Harness.now() + UInt64(seconds * 1e9)
        var count = 0
        while Harness.now() < end {
            operation()
            count += 1
        }
        counter.counts[index] = count
    }
    return Double(counter.counts.reduce(0, +)) / seconds
}
