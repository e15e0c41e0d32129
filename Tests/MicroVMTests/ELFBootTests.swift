import Foundation
import KVMKit
import MicroVM
import PageTables
import Testing

/// What hello64.elf prints on its normal run (Guests/elf/hello64.S).
let hello64ELFOutput = """
    hello from an ELF guest (amd64)
    data ok, bss zero, data and bss writable
    seg ffffffff80000000 0000000000100000 0000000000001000 12
    seg ffffffff80001000 0000000000101000 0000000000001000 10
    seg ffffffff80002000 0000000000102000 0000000000003000 11
    bootinfo version 2 entry ffffffff80000000 segments 3

    """

@Suite("ELF guests on KVM (amd64)", .enabled(if: kvmUsable, kvmReason))
struct ELFBootTests {
    @Test("hello64.elf: upper-half code, read-only data, bss zero, the version-2 boot information")
    func hello() throws {
        let machine = try Machine(configuration: try elfConfiguration("hello64"))
        #expect(try machine.run() == .halted)
        #expect(String(decoding: machine.consoleOutput, as: UTF8.self) == hello64ELFOutput)
    }

    @Test(
        "the engine's translation of every page of every segment has exactly the segment's permissions, and KVM agrees on the frames"
    )
    func translations() throws {
        let configuration = try elfConfiguration("hello64")
        let machine = try Machine(configuration: configuration)
        guard case .elf(let elf) = configuration.imageKind else { return }
        for segment in elf.layout.segments {
            for page in stride(from: UInt64(0), to: segment.pageLength, by: 0x1000) {
                let va = segment.pageVirtualBase &+ page
                let translation = try #require(try machine.addressSpace.lookup(va))
                #expect(translation.physicalAddress == segment.pagePhysicalBase + page)
                #expect(translation.kind == segment.kind)
                #expect(translation.userAccessible == false)
                let identity = try #require(try machine.addressSpace.lookup(segment.pagePhysicalBase + page))
                #expect(identity.kind == segment.kind)
                let kvm = try machine.vcpuTranslate(va)
                #expect(kvm.valid && kvm.physicalAddress == segment.pagePhysicalBase + page)
            }
        }
        #expect(try writeXorExecuteViolations(machine.image, segments: elf.layout.segments) == [])
        #expect(try machine.run() == .halted)
    }

    /// Runs hello64.elf from the entry at `offset` in its entry table and returns the error line.
    func faultLine(entryOffset offset: UInt64, printed: String) throws -> String {
        let machine = try Machine(configuration: try elfConfiguration("hello64", entry: 0xFFFF_FFFF_8000_0000 + offset))
        let root = String(machine.addressSpace.rootPhysicalAddress, radix: 16)
        do {
            let outcome = try machine.run()
            Issue.record(
                "the guest survived: \(outcome), printed \(String(decoding: machine.consoleOutput, as: UTF8.self))")
            return ""
        } catch {
            #expect(String(decoding: machine.consoleOutput, as: UTF8.self) == printed)
            guard case .fault = error else {
                Issue.record("expected a fault, got \(error)")
                return ""
            }
            #expect(error.description.hasSuffix(", CR3 0x\(root)"))
            return String(error.description.dropLast(", CR3 0x\(root)".count))
        }
    }

    @Test("a write to .rodata faults: CR2 is the read-only page")
    func writeRodata() throws {
        let line = try faultLine(entryOffset: 0x10, printed: "writing .rodata\n")
        #expect(line.hasPrefix("triple fault: RIP 0xffffffff800"))
        #expect(
            line.hasSuffix(
                "(-> 0x1001c5, read-only, 4 KiB leaf), CR2 0xffffffff80001000 (-> 0x101000, read-only, no-execute, 4 KiB leaf)"
            ))
    }

    @Test("an instruction fetch from .data faults: RIP and CR2 are the no-execute page")
    func fetchData() throws {
        #expect(
            try faultLine(entryOffset: 0x20, printed: "executing .data\n")
                == "triple fault: RIP 0xffffffff80002008 (-> 0x102008, writable, no-execute, 4 KiB leaf), CR2 0xffffffff80002008 (-> 0x102008, writable, no-execute, 4 KiB leaf)"
        )
    }

    @Test("the identity map obeys W^X too: a write to .text's frame and a fetch from .data's frame fault")
    func identityAliases() throws {
        let write = try faultLine(entryOffset: 0x30, printed: "writing the identity alias of .text\n")
        #expect(write.hasSuffix("CR2 0x100000 (-> 0x100000, read-only, 4 KiB leaf)"))
        #expect(
            try faultLine(entryOffset: 0x40, printed: "executing the identity alias of .data\n")
                == "triple fault: RIP 0x102008 (-> 0x102008, writable, no-execute, 4 KiB leaf), CR2 0x102008 (-> 0x102008, writable, no-execute, 4 KiB leaf)"
        )
    }

    @Test("a write to .text faults")
    func writeText() throws {
        let line = try faultLine(entryOffset: 0x50, printed: "writing .text\n")
        #expect(line.hasSuffix("CR2 0xffffffff80000000 (-> 0x100000, read-only, 4 KiB leaf)"))
    }
}

@Suite("microvm runs ELF guests from the command line", .enabled(if: kvmUsable, kvmReason))
struct ELFCommandLineTests {
    @Test("an ELF file is detected by its magic and booted")
    func boots() throws {
        let result = try runMicrovm(["Guests/elf/hello64.elf"])
        #expect(result.stdout == hello64ELFOutput)
        #expect(result.stderr == "")
        #expect(result.status == 0)
    }

    @Test("--entry overrides e_entry; the fault is one line, status 125")
    func entry() throws {
        let result = try runMicrovm(["--entry", "0xffffffff80000020", "Guests/elf/hello64.elf"])
        #expect(result.stdout == "executing .data\n")
        #expect(
            result.stderr.hasPrefix(
                "microvm: error: triple fault: RIP 0xffffffff80002008 (-> 0x102008, writable, no-execute, 4 KiB leaf)"))
        #expect(result.stderr.filter { $0 == "\n" }.count == 1)
        #expect(result.status == 125)
    }

    @Test("an ELF file larger than RAM boots: only its headers and segments are read")
    func largerThanRAM() throws {
        let path = temporaryPath("big.elf")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(try elfGuest("hello64"))))
        defer { unlink(path) }
        #expect(truncate(path, 1 << 30) == 0)  // a sparse gigabyte of "symbols" after the ELF file
        let start = ContinuousClock.now
        let result = try runMicrovm(["--memory", "4M", path])
        #expect(result.stdout == hello64ELFOutput)
        #expect(result.status == 0)
        #expect(ContinuousClock.now - start < .seconds(5))
    }
}

@Suite("microvm refuses bad ELF guests with one line, status 2")
struct ELFBadInputTests {
    func expectError(
        _ arguments: [String], file bytes: [UInt8]? = nil, _ message: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let path = temporaryPath("bad-\(UInt64.random(in: 0...UInt64.max)).elf")
        if let bytes { #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes))) }
        defer { unlink(path) }
        let result = try runMicrovm(arguments.map { $0 == "FILE" ? path : $0 })
        #expect(
            result.stderr == "microvm: error: \(message.replacingOccurrences(of: "FILE", with: path))\n",
            sourceLocation: sourceLocation)
        #expect(result.status == 2, sourceLocation: sourceLocation)
        #expect(result.stdout == "", sourceLocation: sourceLocation)
    }

    @Test func wrongArchitecture() throws {
        try expectError(
            ["--arch", "i686", "Guests/elf/hello64.elf"],
            "bad ELF guest 'Guests/elf/hello64.elf': ELF class ELFCLASS64 does not match i686, which needs ELFCLASS32")
        try expectError(
            ["Guests/elf/hello32.elf"],
            "bad ELF guest 'Guests/elf/hello32.elf': ELF class ELFCLASS32 does not match amd64, which needs ELFCLASS64")
    }
    @Test func loadIsRefused() throws {
        try expectError(
            ["--load", "0x200000", "Guests/elf/hello64.elf"],
            "--load does not apply to ELF guest 'Guests/elf/hello64.elf': its segments go to their physical addresses (p_paddr)"
        )
    }
    @Test func truncated() throws {
        let bytes = try elfGuest("hello64")
        try expectError(
            ["FILE"], file: Array(bytes.prefix(30)),
            "bad ELF guest 'FILE': truncated ELF header: 64 bytes needed, the file has 30")
        try expectError(
            ["FILE"], file: Array(bytes.prefix(0x2080)),
            "bad ELF guest 'FILE': segment 1: its 0x116 file bytes at offset 0x2000 extend past the end of the file (8320 bytes)"
        )
    }
    @Test func layout() throws {
        try expectError(
            ["--memory", "1M", "Guests/elf/hello64.elf"],
            "memory 1 MiB is too small: this guest and its page tables need at least 1656 KiB")
        try expectError(
            ["--entry", "0xffffffff80001000", "Guests/elf/hello64.elf"],
            "entry point 0xffffffff80001000 is not inside an executable ELF segment")
        try expectError(
            ["--map", "0x40000000=0x100000:4K:rw", "Guests/elf/hello64.elf"],
            "mapping va 0x40000000 -> pa 0x100000 len 0x1000 rw- would make the frames of ELF segment 0 (r-x) writable")
    }
}
