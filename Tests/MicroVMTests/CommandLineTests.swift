import Foundation
@_spi(Testing) import MicroVM
import Testing

/// Each bad input: exact one-line message on standard error, exact status, nothing on standard output.
@Suite("microvm rejects bad input with one line and a status")
struct BadInputTests {
    static let tooBig = temporaryPath("big.bin")
    static let empty = temporaryPath("empty.bin")
    static let notKVM = temporaryPath("not-kvm")

    init() throws {
        FileManager.default.createFile(atPath: Self.empty, contents: Data())
        FileManager.default.createFile(atPath: Self.tooBig, contents: Data(repeating: 0xF4, count: 3 << 20))
        FileManager.default.createFile(atPath: Self.notKVM, contents: Data("x".utf8))
    }

    func expectError(
        _ arguments: [String], _ message: String, status: Int32, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let result = try runMicrovm(arguments)
        #expect(result.stderr == "microvm: error: \(message)\n", sourceLocation: sourceLocation)
        #expect(result.status == status, sourceLocation: sourceLocation)
        #expect(result.stdout == "", sourceLocation: sourceLocation)
    }

    @Test func missingGuestFile() throws {
        try expectError(["/nonexistent/guest.bin"], "guest file '/nonexistent/guest.bin' does not exist", status: 2)
    }
    @Test func emptyGuestFile() throws {
        try expectError([Self.empty], "guest file '\(Self.empty)' is empty", status: 2)
    }
    @Test func unreadableGuestFile() throws {
        try expectError(["Guests"], "guest file 'Guests' is a directory", status: 2)
    }
    @Test func guestLargerThanRAM() throws {
        try expectError(
            ["--memory", "2M", Self.tooBig], "guest image (3145728 bytes at 0x100000) does not fit in 2 MiB of RAM",
            status: 2)
    }
    @Test func guestOverlapsArena() throws {
        try expectError(
            [Self.tooBig, "--memory", "4M"],
            "guest image ends at 0x400000, past the copy-on-write scratch and page-table arena at 0x377000: use more --memory",
            status: 2)
    }
    @Test func memoryTooSmall() throws {
        try expectError(
            ["--memory", "64K", "Guests/hello64.bin"],
            "memory 64 KiB is too small: this guest and its page tables need at least 1568 KiB", status: 2)
    }
    @Test func memoryNotPageMultiple() throws {
        try expectError(
            ["--memory", "1000", "Guests/hello64.bin"], "memory 1000 bytes is not a multiple of 4 KiB", status: 2)
    }
    @Test func memoryNotASize() throws {
        try expectError(
            ["--memory", "12Q"], "--memory: '12Q' is not a size (a number with an optional K, M or G suffix)", status: 2
        )
    }
    @Test func memoryBeyondAnyNumber() throws {
        try expectError(["--memory", "99999999999G"], "--memory: '99999999999G' is too large: at most 3G", status: 2)
    }
    @Test func unknownArchitecture() throws {
        try expectError(["--arch", "arm64"], "--arch: unknown architecture 'arm64' (use amd64 or i686)", status: 2)
    }
    @Test func unknownFlag() throws {
        try expectError(["--frobnicate"], "unknown option '--frobnicate' (see --help)", status: 2)
    }
    @Test func missingValue() throws {
        try expectError(["--memory"], "--memory needs a value", status: 2)
    }
    @Test func malformedMap() throws {
        try expectError(
            ["--map", "0x1000:0x2000"],
            "--map: '0x1000:0x2000' is malformed: expected VA=PA:LEN:PERMS, e.g. 0x40000000=0x200000:2M:rw", status: 2)
        try expectError(
            ["--map", "0x40000000=0x200000:4K:rwq"],
            "--map: '0x40000000=0x200000:4K:rwq': unknown permission 'q' (use r, w, x, c, u)", status: 2)
    }
    @Test func misalignedMap() throws {
        try expectError(
            ["--map", "0x40000800=0x200000:4K:rw", "Guests/hello64.bin"],
            "mapping va 0x40000800 -> pa 0x200000 len 0x1000 rw- rejected: virtual address 0x40000800 is not a multiple of 4 KiB",
            status: 2)
    }
    @Test func overlappingMaps() throws {
        try expectError(
            ["--map", "0x40000000=0x200000:8K:rw", "--map", "0x40001000=0x300000:4K:r", "Guests/hello64.bin"],
            "mappings overlap: va 0x40000000 -> pa 0x200000 len 0x2000 rw- and va 0x40001000 -> pa 0x300000 len 0x1000 r--",
            status: 2)
    }
    @Test func loadAddressOutsideRAM() throws {
        try expectError(
            ["--load", "0x2000000", "Guests/hello64.bin"], "load address 0x2000000 is outside guest RAM (16 MiB)",
            status: 2)
    }
    @Test(arguments: ["1e30", "inf", "1e19s", "10000000000000000000ms", "-1", "soon"])
    func badTimeout(_ text: String) throws {
        try expectError(
            ["--timeout", text, "Guests/hello64.bin"],
            "--timeout: '\(text)' is not a duration from 0 to 100 years (e.g. 10s, 500ms, 0 for none)", status: 2)
    }
    @Test func hugeLoadAddress() throws {
        try expectError(
            ["--load", "0xFFFFFFFFFFFFF000", "Guests/hello64.bin"],
            "load address 0xfffffffffffff000 is outside guest RAM (16 MiB)", status: 2)
    }
    @Test func mappingOutsideTheAddressSpace() throws {
        try expectError(
            ["--map", "0=0:0xFFFFFFFFFFFFF000:r", "Guests/hello64.bin"],
            "mapping va 0x0 -> pa 0x0 len 0xfffffffffffff000 r-- rejected: range 0x0 + 0xfffffffffffff000 is not inside one canonical half of the 48-bit amd64 address space",
            status: 2)
        try expectError(
            ["--arch", "i686", "--map", "0xC0000000=0:2G:r", "Guests/hello32.bin"],
            "mapping va 0xc0000000 -> pa 0x0 len 0x80000000 r-- rejected: range 0xc0000000 + 0x80000000 goes beyond the 4 GiB i686 address space",
            status: 2)
    }
    @Test func kvmMissing() throws {
        try expectError(
            ["--kvm", "/nonexistent/kvm", "Guests/hello64.bin"],
            "cannot open /nonexistent/kvm: No such file or directory (errno 2); microvm needs KVM: load kvm_intel or kvm_amd (modprobe) and give this user read-write access to /dev/kvm (e.g. the kvm group)",
            status: 3)
    }
    @Test func kvmNotADevice() throws {
        let result = try runMicrovm(["--kvm", Self.notKVM, "Guests/hello64.bin"])
        #expect(result.status == 3)
        #expect(result.stderr.hasPrefix("microvm: error: "))
        #expect(result.stderr.contains("KVM_GET_API_VERSION"))
        #expect(result.stderr.contains("microvm needs KVM"))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }
}

@Suite("microvm runs guests end to end", .enabled(if: kvmUsable, kvmReason))
struct CommandLineRunTests {
    @Test("no guest path boots the built-in demo")
    func demo() throws {
        let result = try runMicrovm([])
        #expect(result.stdout == "hello from microvm (amd64)\n")
        #expect(result.stderr == "")
        #expect(result.status == 0)
    }

    @Test("exit status from port 0xF4")
    func exitStatus() throws {
        let result = try runMicrovm(["Guests/exit64.bin"])
        #expect(result.stdout == "exiting with 42\n")
        #expect(result.status == 42)
    }

    @Test("a timeout is one line and status 124")
    func timeout() throws {
        let result = try runMicrovm(["--timeout", "300ms", "Guests/loop64.bin"])
        #expect(result.stdout == "looping\n")
        #expect(
            result.stderr.hasPrefix("microvm: error: timeout: the guest was still running after 300 ms (RIP 0x100015, ")
        )
        #expect(result.status == 124)
    }

    @Test("an unknown port is one line and status 125")
    func unknownPort() throws {
        let result = try runMicrovm(["Guests/port64.bin"])
        #expect(result.stdout == "port\n")
        #expect(result.stderr == "microvm: error: unknown port: out of 1 byte (0x11) to port 0x80 at RIP 0x10001c\n")
        #expect(result.status == 125)
    }

    @Test("--trace prints every exit")
    func trace() throws {
        let result = try runMicrovm(["--trace", "Guests/exit64.bin"])
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 17)
        #expect(
            lines.first == "[exit 1] io out port 0x3f8 size 1 value 0x65 (RIP 0x100016)"
                || lines.first?.hasPrefix("[exit 1] ") == true)
        #expect(lines.last?.hasPrefix("[exit 17] ") == true)
        #expect(result.status == 42)
    }

    @Test("--map adds a mapping and --dump-tables shows it")
    func dump() throws {
        let result = try runMicrovm(["--dump-tables", "--map", "0x40000000=0x200000:2M:rc", "Guests/hello64.bin"])
        #expect(result.status == 0)
        let expected = """
            0x0000000000001000-0x00000000000fffff -> 0x0000000000001000-0x00000000000fffff   1020 KiB  rw--   4 KiB
            0x0000000000100000-0x0000000000100fff -> 0x0000000000100000-0x0000000000100fff      4 KiB  rwx-   4 KiB
            0x0000000000101000-0x00000000001fffff -> 0x0000000000101000-0x00000000001fffff   1020 KiB  rw--   4 KiB
            0x0000000000200000-0x0000000000dfffff -> 0x0000000000200000-0x0000000000dfffff     12 MiB  rw--   2 MiB
            0x0000000000e00000-0x0000000000f69fff -> 0x0000000000e00000-0x0000000000f69fff   1448 KiB  rw--   4 KiB
            0x0000000000faa000-0x0000000000ffffff -> 0x0000000000faa000-0x0000000000ffffff    344 KiB  rw--   4 KiB
            0x0000000040000000-0x00000000401fffff -> 0x0000000000200000-0x00000000003fffff      2 MiB  r---c  2 MiB

            """
        #expect(result.stderr == "address space at boot:\n" + expected + "address space after the run:\n" + expected)
    }
}
