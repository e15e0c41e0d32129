// Leak checks that no other thread can disturb: boots a guest N times in one process (one machine after
// another), or makes N calls into one machine, and prints the process's open file descriptors, resident
// memory and threads before and after.
//
//   microvm-soak GUEST.bin [COUNT]           COUNT machines booted to hlt (default 1000)
//   microvm-soak --calls GUEST.bin [COUNT]   COUNT calls of `add` into one machine (a calls64-style guest),
//                                            resetting it to its ready snapshot every 100 calls
//   prints: fds <before> <after> rss <before> <after> threads <before> <after>
import Foundation
import MicroVM
import PageTables

let usage = "usage: microvm-soak [--calls] GUEST.bin [COUNT]   (COUNT from 1 to 10000000, default 1000)\n"

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("microvm-soak: error: \(message)\n".utf8))
    exit(2)
}

func entries(_ directory: String) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: directory))?.count ?? -1
}

func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return -1 }
    let fields = text.split(separator: " ")
    guard fields.count >= 2, let pages = Int(fields[1]) else { return -1 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Descriptors (the listing's own not counted), resident bytes, threads.
func counts() -> (fds: Int, rss: Int, threads: Int) {
    (entries("/proc/self/fd") - 1, residentBytes(), entries("/proc/self/task"))
}

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("-h") || arguments.contains("--help") {
    FileHandle.standardOutput.write(Data(usage.utf8))
    exit(0)
}
let callMode = arguments.first == "--calls"
if callMode { arguments.removeFirst() }
guard (1...2).contains(arguments.count), !arguments[0].hasPrefix("-") else { fail(String(usage.dropLast())) }
var count = 1000
if arguments.count == 2 {
    guard let parsed = Int(arguments[1]), (1...10_000_000).contains(parsed) else {
        fail("'\(arguments[1])' is not a count from 1 to 10000000")
    }
    count = parsed
}
guard let data = FileManager.default.contents(atPath: arguments[0]), !data.isEmpty else {
    fail("cannot read a guest from '\(arguments[0])'")
}
let image = [UInt8](data)
do {
    let host = try KVMHost()
    var configuration = MachineConfiguration(architecture: .amd64, image: image)
    configuration.console = .discard
    if callMode {
        configuration.resettable = true
        let machine = try Machine(configuration: configuration, host: host)
        guard try machine.run() == .ready else { fail("the guest did not become ready for calls") }
        _ = try machine.snapshot()
        let add = try machine.function("add")
        func calls(_ n: Int) throws {
            for i in 0..<n {
                guard try machine.call(add, [.int(Int64(i)), 1]) == .int(Int64(i) + 1) else { fail("add returned the wrong sum") }
                if i % 100 == 99 { try machine.reset() }
            }
        }
        // First the steady state: the allocator warmed up, and every page of the 1 MiB dirty ring written once
        // (the kernel fills it in turn, and its pages count as this process's resident memory).
        try calls(25000)
        let before = counts()
        try calls(count)
        let after = counts()
        print("fds \(before.fds) \(after.fds) rss \(before.rss) \(after.rss) threads \(before.threads) \(after.threads)")
    } else {
        func bootOnce() throws {
            let machine = try Machine(configuration: configuration, host: host)
            let outcome = try machine.run()
            guard outcome == .halted else { fail("the guest ended with \(outcome), not hlt") }
        }
        for _ in 0..<20 { try bootOnce() }
        Machine.waitForTeardown()
        let before = counts()
        for _ in 0..<count { try bootOnce() }
        Machine.waitForTeardown()
        let after = counts()
        print("fds \(before.fds) \(after.fds) rss \(before.rss) \(after.rss) threads \(before.threads) \(after.threads)")
    }
} catch {
    fail("\(error)")
}
