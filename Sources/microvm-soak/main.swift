@preconcurrency import Glibc
// Boots a guest N times in one process, one machine after another, and prints the process's open file
// descriptors and resident memory before and after: a leak check that no other thread can disturb.
//
//   microvm-soak GUEST.bin [COUNT]
//   prints: fds <before> <after> rss <before> <after>
import MicroVM
import PageTables

func openDescriptors() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(directory) }
    var count = 0
    while readdir(directory) != nil { count += 1 }
    return count - 3  // ".", ".." and the directory's own descriptor
}

func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return -1 }
    defer { fclose(file) }
    var size = 0, resident = 0
    guard
        withUnsafeMutablePointer(
            to: &size,
            { s in
                withUnsafeMutablePointer(to: &resident) { r in
                    fscanfTwo(file, s, r)
                }
            })
    else { return -1 }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Reads two integers from statm without the variadic fscanf.
func fscanfTwo(_ file: UnsafeMutablePointer<FILE>, _ a: UnsafeMutablePointer<Int>, _ b: UnsafeMutablePointer<Int>)
    -> Bool
{
    var buffer = [CChar](repeating: 0, count: 128)
    guard fgets(&buffer, 128, file) != nil else { return false }
    let fields = String(cString: buffer).split(separator: " ")
    guard fields.count >= 2, let x = Int(fields[0]), let y = Int(fields[1]) else { return false }
    a.pointee = x
    b.pointee = y
    return true
}

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    writeStandardError("usage: microvm-soak GUEST.bin [COUNT]\n")
    exit(2)
}
let count = arguments.count > 2 ? Int(arguments[2]) ?? 1000 : 1000
do {
    let image = try GuestFile.read(path: arguments[1])
    let host = try KVMHost()
    func bootOnce() throws {
        var configuration = MachineConfiguration(architecture: .amd64, image: image)
        configuration.console = .discard
        let machine = try Machine(configuration: configuration, host: host)
        guard try machine.run() == .halted else { throw MachineError.emptyImage }
    }
    for _ in 0..<20 { try bootOnce() }
    Machine.waitForTeardown()
    let fdsBefore = openDescriptors(), rssBefore = residentBytes()
    for _ in 0..<count { try bootOnce() }
    Machine.waitForTeardown()
    let fdsAfter = openDescriptors(), rssAfter = residentBytes()
    print("fds \(fdsBefore) \(fdsAfter) rss \(rssBefore) \(rssAfter)")
} catch {
    writeStandardError("microvm-soak: \(error)\n")
    exit(1)
}
