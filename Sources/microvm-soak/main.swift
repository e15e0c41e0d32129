// Boots a guest N times in one process, one machine after another, and prints the process's open file
// descriptors and resident memory before and after: a leak check that no other thread can disturb.
//
//   microvm-soak GUEST.bin [COUNT]      COUNT from 1 to 10,000,000 (default 1000)
//   prints: fds <before> <after> rss <before> <after>
import Foundation
import MicroVM
import PageTables

let usage = "usage: microvm-soak GUEST.bin [COUNT]   (COUNT from 1 to 10000000, default 1000)\n"

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("microvm-soak: error: \(message)\n".utf8))
    exit(2)
}

func openDescriptors() -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.count ?? 0) - 1  // minus the listing's own
}

func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return -1 }
    let fields = text.split(separator: " ")
    guard fields.count >= 2, let pages = Int(fields[1]) else { return -1 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("-h") || arguments.contains("--help") {
    FileHandle.standardOutput.write(Data(usage.utf8))
    exit(0)
}
guard (1...2).contains(arguments.count), !arguments[0].hasPrefix("-") else { fail(usage.dropLast() + "") }
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
    func bootOnce() throws {
        var configuration = MachineConfiguration(architecture: .amd64, image: image)
        configuration.console = .discard
        let machine = try Machine(configuration: configuration, host: host)
        let outcome = try machine.run()
        guard outcome == .halted else { fail("the guest ended with \(outcome), not hlt") }
    }
    for _ in 0..<20 { try bootOnce() }
    Machine.waitForTeardown()
    let fdsBefore = openDescriptors(), rssBefore = residentBytes()
    for _ in 0..<count { try bootOnce() }
    Machine.waitForTeardown()
    let fdsAfter = openDescriptors(), rssAfter = residentBytes()
    print("fds \(fdsBefore) \(fdsAfter) rss \(rssBefore) \(rssAfter)")
} catch {
    fail("\(error)")
}
