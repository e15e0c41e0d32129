import Foundation
@_spi(Testing) import MicroVM
import PageTables
import Testing

// The Embedded Swift guests (Guests/swift/): their exact console bytes and endings on KVM (amd64), the i686
// ones on QEMU's software MMU, and the ELF / flat-image pair the build script writes for each.

/// The names built by scripts/build-swift-guests.sh.
private let swiftGuests = [
    "swifthello64", "swifthello32", "pagewalk64", "pagewalk32", "cow64", "cow32", "alloc64", "callee64",
]

/// A configuration for a Swift guest with a bigger timeout than the assembly guests': every instruction is
/// emulated here (about a microsecond each), and pagewalk64 over 4 KiB leaves runs a few hundred thousand.
private func swiftConfiguration(
    _ name: String, _ architecture: Architecture = .amd64, pageSize: MachineConfiguration.PageSizePolicy = .automatic,
    mappings: [Mapping] = []
) throws -> MachineConfiguration {
    var configuration = try configuration(name, architecture)
    configuration.pageSizePolicy = pageSize
    configuration.extraMappings = mappings
    configuration.timeout = .seconds(20)
    return configuration
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// Mappings that exercise every column of the dump: the upper half, a copy-on-write user page under the
/// lower half's top, a 2 MiB copy-on-write range, an executable page at the very top of the address space.
private let dumpMappings: [Mapping] = [
    Mapping(physicalBase: 0x30_0000, virtualBase: 0xFFFF_8000_0000_0000, length: 0x2000, kind: .readWrite),
    Mapping(
        physicalBase: 0x50_0000, virtualBase: 0x7F00_0000_0000, length: 0x1000, kind: .copyOnWrite(executable: false),
        userAccessible: true),
    Mapping(
        physicalBase: 0x20_0000, virtualBase: 0x4000_0000, length: 0x20_0000, kind: .copyOnWrite(executable: false)),
    Mapping(
        physicalBase: 0x60_0000, virtualBase: 0xFFFF_FFFF_C000_0000, length: 0x3000, kind: .readWriteExecute),
]

@Suite("Embedded Swift guests on KVM (amd64)", .enabled(if: kvmUsable, kvmReason))
struct SwiftGuestKVMTests {
    @Test("swifthello64 prints its line and halts")
    func hello() throws {
        let machine = try Machine(configuration: try swiftConfiguration("swifthello64"))
        #expect(try machine.run() == .halted)
        #expect(text(machine.consoleOutput) == "hello from Swift (amd64)\n")
        // One exit per console byte, then HLT: the runtime adds no port traffic.
        #expect(machine.exitCount == 26)
        #expect(machine.reports.isEmpty)
    }

    @Test(
        "pagewalk64 prints its own tables exactly as the host dumps them",
        arguments: [MachineConfiguration.PageSizePolicy.small, .automatic], [false, true])
    func pageWalk(_ pageSize: MachineConfiguration.PageSizePolicy, withMappings: Bool) throws {
        let machine = try Machine(
            configuration: try swiftConfiguration(
                "pagewalk64", pageSize: pageSize, mappings: withMappings ? dumpMappings : []))
        let atBoot = machine.dumpTables()
        #expect(try machine.run() == .halted)
        let printed = text(machine.consoleOutput)
        #expect(printed == atBoot)
        #expect(machine.dumpTables() == atBoot, "the guest changed nothing")
        // The comparison means something: the dump has the leaves the policy allows, and the mappings.
        #expect(printed.contains("  2 MiB\n") == (pageSize == .automatic))
        #expect(printed.contains(" rwx-   4 KiB\n"))
        if withMappings {
            #expect(
                printed.contains(
                    "0x00007f0000000000-0x00007f0000000fff -> 0x0000000000500000-0x0000000000500fff      4 KiB  r--uc  4 KiB\n"
                ))
            #expect(
                printed.contains(
                    "0xffff800000000000-0xffff800000001fff -> 0x0000000000300000-0x0000000000301fff      8 KiB  rw--   4 KiB\n"
                ))
            #expect(
                printed.contains(
                    "0xffffffffc0000000-0xffffffffc0002fff -> 0x0000000000600000-0x0000000000602fff     12 KiB  rwx-   4 KiB\n"
                ))
            #expect(
                printed.contains(
                    "0x0000000040000000-0x00000000401fffff -> 0x0000000000200000-0x00000000003fffff      2 MiB  r---c"))
        }
    }

    @Test(
        "cow64: the write lands in a private copy, the original frame keeps its bytes",
        arguments: [
            // A 4 KiB copy-on-write page; a page inside a 2 MiB copy-on-write leaf (the host splits it).
            (MachineConfiguration.PageSizePolicy.small, UInt64(0x1000)), (.automatic, UInt64(0x20_0000)),
        ])
    func copyOnWrite(_ pageSize: MachineConfiguration.PageSizePolicy, length: UInt64) throws {
        let page: UInt64 = 0x4000_0000
        let frame: UInt64 = 0x40_0000
        let machine = try Machine(
            configuration: try swiftConfiguration(
                "cow64", pageSize: pageSize,
                mappings: [
                    Mapping(
                        physicalBase: frame, virtualBase: page, length: length, kind: .copyOnWrite(executable: false))
                ]))
        #expect(try machine.addressSpace.lookup(page)?.leafSize == (length == 0x1000 ? .size4K : .size2M))
        #expect(try machine.run() == .halted)

        try #require(machine.copyOnWriteResolutions.count == 1)
        let resolution = machine.copyOnWriteResolutions[0]
        #expect(resolution.virtualAddress == page && resolution.from == frame)
        let copy = resolution.to
        #expect(
            text(machine.consoleOutput) == """
                cow64: 0x0000000040000000 is copy-on-write over frame 0x0000000000400000
                before the write: the page reads "original", the frame reads "original"
                after the write: the page reads "private!", the frame reads "original"
                0x0000000040000000 now maps frame \(hex(copy, digits: 16)) rw

                """)
        let original = UInt64(0x6C61_6E69_6769_726F)  // "original", little-endian
        let written = UInt64(0x2165_7461_7669_7270)  // "private!"
        #expect(machine.reports == [[original, original, written, original, copy]])
        // The host's view agrees: RAM holds both versions, and the page now maps the copy, writable.
        #expect(machine.memory.load(UInt64.self, at: frame) == original)
        #expect(machine.memory.load(UInt64.self, at: copy) == written)
        let now = try #require(try machine.addressSpace.lookup(page))
        #expect(now.physicalAddress == copy && now.kind == .readWrite && now.leafSize == .size4K)
        if length > 0x1000 {
            // The rest of the 2 MiB range is still copy-on-write over the original frames.
            let next = try #require(try machine.addressSpace.lookup(page + 0x1000))
            #expect(next.physicalAddress == frame + 0x1000 && next.kind == .copyOnWrite(executable: false))
        }
    }

    @Test("cow64 without a copy-on-write mapping says so and exits with 1")
    func copyOnWriteMissing() throws {
        let machine = try Machine(configuration: try swiftConfiguration("cow64"))
        #expect(try machine.run() == .exited(status: 1))
        #expect(text(machine.consoleOutput) == "cow64: no copy-on-write mapping (--map VA=PA:4K:rc)\n")
    }

    @Test("alloc64: arrays, a class and print with interpolation run on the runtime's heap and putchar")
    func heap() throws {
        let machine = try Machine(configuration: try swiftConfiguration("alloc64"))
        #expect(try machine.run() == .halted)
        try #require(machine.reports.count == 1)
        let report = machine.reports[0]
        #expect(report.count == 3 && report[0] == 100 && report[1] == 338_350)
        let used = report.count == 3 ? report[2] : 0
        #expect(used > 0 && used < 64 << 10)
        #expect(
            text(machine.consoleOutput)
                == "alloc64: the squares of 1...100 sum to 338350\nalloc64: \(used) bytes of heap\n")
        // The heap starts on the page after the image: the first object there begins with its metadata pointer,
        // an address inside the image.
        let imageEnd = 0x10_0000 + UInt64(try guest("alloc64").count)
        let metadata = machine.memory.load(UInt64.self, at: (imageEnd + 0xFFF) & ~0xFFF) ?? 0
        #expect(metadata >= 0x10_0000 && metadata < imageEnd)
    }

    @Test("a write fault the host cannot resolve is reported by the runtime's handler, not a triple fault")
    func fatalPageFault() throws {
        let page: UInt64 = 0x4000_0000
        let machine = try Machine(
            configuration: try swiftConfiguration(
                "cow64", pageSize: .small,
                mappings: [
                    Mapping(
                        physicalBase: 0x40_0000, virtualBase: page, length: 0x1000,
                        kind: .copyOnWrite(executable: false))
                ]))
        // The boot block still lists the mapping as copy-on-write, but the page is now plain read-only: hypercall
        // 3 answers "not copy-on-write", and the handler reports the fault with hypercall 2.
        try machine.addressSpace.protect(virtualBase: page, length: 0x1000, kind: .readOnly, userAccessible: false)
        do {
            _ = try machine.run()
            Issue.record("expected a page fault")
        } catch {
            guard case .fault(let fault) = error, case .exception(14, let errorCode) = fault.kind else {
                Issue.record("expected a page fault, got \(error)")
                return
            }
            #expect(errorCode & 0x3 == 0x3)  // present, write
            #expect(
                fault.description.hasPrefix(
                    "page fault: write to 0x40000000 (-> 0x400000, read-only, no-execute, 4 KiB leaf) at RIP 0x10"))
        }
        #expect(machine.copyOnWriteResolutions.isEmpty)
        #expect(machine.consoleOutput.isEmpty)
    }
}

@Suite("Embedded Swift guests on QEMU's software MMU (i686)", .enabled(if: qemuTestsRun, qemuReason))
struct SwiftGuestQEMUTests {
    /// The boot image of an i686 Swift guest in console mode (boot-info flag bit 0: the runtime ends QEMU
    /// through isa-debug-exit instead of `hlt`).
    func image(_ name: String, allowed: AllowedLeafSizes, mappings: [Mapping] = []) throws -> BootImage {
        var configuration = MachineConfiguration(architecture: .i686, image: try guest(name))
        configuration.extraMappings = mappings
        let image = try BootImage(configuration: configuration, allowedLeafSizes: allowed)
        try image.setProbes([], flags: .reportOnConsole)
        return image
    }

    @Test("swifthello32 prints its line and ends (QEMU status 1: the runtime's `out` 0 to port 0xF4)")
    func hello() throws {
        let run = try runOnQEMU(try image("swifthello32", allowed: []))
        #expect(run.status == 1, "stderr: \(run.standardError)")
        #expect(run.standardOutput == "hello from Swift (i686)\n")
    }

    @Test("pagewalk32 prints its own 2-level tables exactly as the host dumps them", arguments: [false, true])
    func pageWalk(largeLeaves: Bool) throws {
        let image = try image(
            "pagewalk32", allowed: largeLeaves ? [.size4M] : [],
            mappings: [
                Mapping(physicalBase: 0x40_0000, virtualBase: 0xC000_0000, length: 0x40_0000, kind: .readOnly),
                Mapping(
                    physicalBase: 0x50_0000, virtualBase: 0x4000_0000, length: 0x1000,
                    kind: .copyOnWrite(executable: false), userAccessible: true),
                Mapping(physicalBase: 0x60_0000, virtualBase: 0xFFFF_E000, length: 0x2000, kind: .readWrite),
            ])
        let expected = image.addressSpace.dump()
        #expect(expected.contains("  4 MiB\n") == largeLeaves)
        let run = try runOnQEMU(image)
        #expect(run.status == 1, "stderr: \(run.standardError)")
        #expect(run.standardOutput == expected)
    }
}

extension SwiftGuestQEMUTests {
    @Test(
        "cow32: the i686 #PF handler resolves copy-on-write with the host answering on the console",
        arguments: [false, true])
    func copyOnWrite(largeLeaves: Bool) throws {
        let page: UInt64 = 0x4000_0000
        let frame: UInt64 = 0x40_0000
        let ramPath = sharedRAMPath()
        defer { unlink(ramPath) }
        let memory = try GuestMemory(sharedFile: ramPath, size: 16 << 20)
        var configuration = MachineConfiguration(architecture: .i686, image: try guest("cow32"))
        configuration.extraMappings = [
            Mapping(
                physicalBase: frame, virtualBase: page, length: largeLeaves ? 4 << 20 : 0x1000,
                kind: .copyOnWrite(executable: false))
        ]
        let image = try BootImage(
            configuration: configuration, allowedLeafSizes: largeLeaves ? [.size4M] : [], memory: memory)
        #expect(try image.addressSpace.lookup(page)?.leafSize == (largeLeaves ? .size4M : .size4K))
        try image.setProbes([], flags: [.reportOnConsole, .hostAnswersOnConsole])

        let run = try runOnQEMU(image, sharedRAM: ramPath)
        #expect(run.status == 1, "stderr: \(run.standardError)")
        try #require(run.resolutions.count == 1, "output:\n\(run.standardOutput)")
        let resolution = try #require(run.resolutions[0])
        #expect(resolution.virtualAddress == page && resolution.from == frame)
        // On i686 the 8-byte store is two 4-byte stores (the compiler may write either half first): the `C`
        // line names the address of the first one, in the page.
        let lines = run.standardOutput.split(separator: "\n", maxSplits: 1)
        try #require(lines.count == 2, "output:\n\(run.standardOutput)")
        #expect(["C 40000000", "C 40000004"].contains(String(lines[0])))
        #expect(
            lines[1] == """
                cow32: 0x40000000 is copy-on-write over frame 0x00400000
                before the write: the page reads "original", the frame reads "original"
                after the write: the page reads "private!", the frame reads "original"
                0x40000000 now maps frame \(hex(resolution.to, digits: 8)) rw

                """)
        #expect(memory.load(UInt64.self, at: frame) == 0x6C61_6E69_6769_726F)  // "original"
        #expect(memory.load(UInt64.self, at: resolution.to) == 0x2165_7461_7669_7270)  // "private!"
    }
}

extension SwiftGuestQEMUTests {
    @Test("cow32 with nobody answering: the runtime reports the fault as an F line, QEMU status 3")
    func copyOnWriteUnanswered() throws {
        var configuration = MachineConfiguration(architecture: .i686, image: try guest("cow32"))
        configuration.extraMappings = [
            Mapping(
                physicalBase: 0x40_0000, virtualBase: 0x4000_0000, length: 0x1000, kind: .copyOnWrite(executable: false)
            )
        ]
        let image = try BootImage(configuration: configuration, allowedLeafSizes: [])
        try image.setProbes([], flags: .reportOnConsole)
        let run = try runOnQEMU(image)
        #expect(run.status == 3, "stderr: \(run.standardError)")
        // F <vector 14> <error P|W = 3> <CR2> <EIP>, in hex without 0x; EIP is inside the image.
        let fatal = try #require(run.console.fatal, "output:\n\(run.standardOutput)")
        #expect(fatal[0] == 14 && fatal[1] == 3 && fatal[2] & ~7 == 0x4000_0000)
        let imageEnd = 0x10_0000 + UInt64(try guest("cow32").count)
        #expect(fatal[3] > 0x10_0000 && fatal[3] < imageEnd)
        #expect(run.console.reports.isEmpty && run.console.otherLines.isEmpty)
    }
}

/// What the build script promises for every Swift guest: the committed ELF's one loadable segment is the flat
/// image, at the default load address, entered at its first byte.
@Suite("Embedded Swift guests: ELF and flat image")
struct SwiftGuestFileTests {
    @Test("each ELF loads exactly the bytes of its flat image at 0x100000 and enters there", arguments: swiftGuests)
    func elfMatchesFlatImage(_ name: String) throws {
        let flat = try guest(name)
        let elf = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(packageRoot)/Guests/swift/\(name).elf")))
        func read(_ offset: Int, _ size: Int) -> UInt64 {
            (0..<size).reduce(UInt64(0)) { $0 | UInt64(elf[offset + $1]) << (8 * UInt64($1)) }
        }
        try #require(elf.count > 64 && elf[0..<4] == [0x7F, 0x45, 0x4C, 0x46])  // "\x7fELF"
        let is64 = elf[4] == 2
        #expect(is64 == name.hasSuffix("64"))
        #expect(read(16, 2) == 2)  // ET_EXEC
        #expect(read(18, 2) == (is64 ? 62 : 3))  // EM_X86_64 / EM_386
        let word = is64 ? 8 : 4
        #expect(read(24, word) == 0x10_0000)  // e_entry
        let programHeaders = Int(read(is64 ? 32 : 28, word))
        let headerSize = Int(read(is64 ? 54 : 42, 2))
        let headerCount = Int(read(is64 ? 56 : 44, 2))
        var loads: [(offset: Int, address: UInt64, fileSize: Int, memorySize: Int)] = []
        for index in 0..<headerCount {
            let header = programHeaders + index * headerSize
            guard read(header, 4) == 1 else { continue }  // PT_LOAD
            if is64 {
                loads.append(
                    (
                        Int(read(header + 8, 8)), read(header + 16, 8), Int(read(header + 32, 8)),
                        Int(read(header + 40, 8))
                    ))
            } else {
                loads.append(
                    (
                        Int(read(header + 4, 4)), read(header + 8, 4), Int(read(header + 16, 4)),
                        Int(read(header + 20, 4))
                    ))
            }
        }
        try #require(loads.count == 1)
        let load = loads[0]
        #expect(load.address == 0x10_0000)
        #expect(load.fileSize == flat.count && load.memorySize == flat.count)
        #expect(Array(elf[load.offset..<load.offset + load.fileSize]) == flat)
    }
}
