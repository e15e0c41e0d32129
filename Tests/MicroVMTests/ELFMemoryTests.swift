import MicroVM
import PageTables
import Testing

/// ELF images placed in guest RAM and mapped by the host, checked without KVM: the tables, the bytes and the
/// boot-information block of a ``BootImage``.
@Suite("ELF images in guest memory: placement, W^X, boot information")
struct ELFMemoryTests {
    @Test(
        "hello64.elf: each segment's pages have exactly its permissions, at its virtual address and on the identity map",
        arguments: [AllowedLeafSizes.smallPagesOnly, [.size2M]])
    func permissionsAMD64(_ leaves: AllowedLeafSizes) throws {
        let configuration = try elfConfiguration("hello64")
        let image = try BootImage(configuration: configuration, allowedLeafSizes: leaves)
        guard case .elf(let elf) = configuration.imageKind else { return }
        #expect(try writeXorExecuteViolations(image, segments: elf.layout.segments) == [])
        let space = image.addressSpace
        // Virtual pages, and the identity map of the same frames.
        let expected: [(UInt64, UInt64, MappingKind)] = [
            (0xFFFF_FFFF_8000_0000, 0x10_0000, .readExecute),
            (0xFFFF_FFFF_8000_1000, 0x10_1000, .readOnly),
            (0xFFFF_FFFF_8000_2000, 0x10_2000, .readWrite),
            (0xFFFF_FFFF_8000_3000, 0x10_3000, .readWrite),
            (0xFFFF_FFFF_8000_4000, 0x10_4000, .readWrite),
        ]
        for (va, pa, kind) in expected {
            #expect(try space.lookup(va)?.physicalAddress == pa)
            #expect(try space.lookup(va)?.kind == kind)
            #expect(try space.lookup(pa)?.physicalAddress == pa)
            #expect(try space.lookup(pa)?.kind == kind)
        }
        // The rest of RAM: read-write, not executable; page 0 and the page after the image as before.
        #expect(try space.lookup(0) == nil)
        #expect(try space.lookup(0xF_F000)?.kind == .readWrite)
        #expect(try space.lookup(0x10_5000)?.kind == .readWrite)
        #expect(try space.lookup(0xFFFF_FFFF_8000_5000) == nil)
    }

    @Test("hello32.elf: no page of a read-only segment is writable anywhere (i686 has no NX)")
    func permissionsI686() throws {
        let configuration = try elfConfiguration("hello32")
        let image = try BootImage(configuration: configuration, allowedLeafSizes: [.size4M])
        guard case .elf(let elf) = configuration.imageKind else { return }
        #expect(try writeXorExecuteViolations(image, segments: elf.layout.segments) == [])
        #expect(try image.addressSpace.lookup(0xC000_0000)?.kind.isWritable == false)
        #expect(try image.addressSpace.lookup(0x10_0000)?.kind.isWritable == false)
        #expect(try image.addressSpace.lookup(0xC000_2000)?.kind.isWritable == true)
    }

    @Test("segment bytes land at p_paddr; bss is zeroed even in memory that was not")
    func bytesAndBSS() throws {
        let bytes = try elfGuest("hello64")
        let configuration = try elfConfiguration("hello64")
        let memory = try GuestMemory(size: configuration.memorySize)
        #expect(memory.write([UInt8](repeating: 0xAA, count: 0x5000), at: 0x10_0000))
        let image = try BootImage(configuration: configuration, allowedLeafSizes: [], memory: memory)
        let layout = try ELFLayout(bytes: bytes, architecture: .amd64)
        for segment in layout.segments {
            let file = Array(bytes[Int(segment.fileOffset)..<Int(segment.fileOffset + segment.fileSize)])
            #expect(image.memory.read(at: segment.physicalAddress, count: file.count) == file)
            let bss = segment.memorySize - segment.fileSize
            if bss > 0 {
                let zeros = image.memory.read(at: segment.physicalAddress + segment.fileSize, count: Int(bss))
                #expect(zeros == [UInt8](repeating: 0, count: Int(bss)))
            }
        }
        #expect(layout.segments[2].memorySize - layout.segments[2].fileSize > 0x2000)
    }

    @Test("the boot-information block is version 2 for an ELF image: segment records, then the extension")
    func bootInfoVersion2() throws {
        let image = try BootImage(configuration: try elfConfiguration("hello64"), allowedLeafSizes: [.size2M])
        let memory = image.memory
        let base = Layout.bootInfoAddress
        #expect(memory.load(UInt32.self, at: base + 4) == 2)
        #expect(memory.load(UInt64.self, at: base + 40) == 0x10_0000)  // the image's first frame
        #expect(memory.load(UInt64.self, at: base + 48) == 0x5000)  // through the last frame of its last segment
        #expect(memory.load(UInt32.self, at: base + 60) == 3)
        let records: [(UInt64, UInt64, UInt64, UInt32)] = [
            (0xFFFF_FFFF_8000_0000, 0x10_0000, 0x1000, 0x12),
            (0xFFFF_FFFF_8000_1000, 0x10_1000, 0x1000, 0x10),
            (0xFFFF_FFFF_8000_2000, 0x10_2000, 0x3000, 0x11),
        ]
        for (index, record) in records.enumerated() {
            let at = base + 80 + 32 * UInt64(index)
            #expect(memory.load(UInt64.self, at: at) == record.0)
            #expect(memory.load(UInt64.self, at: at + 8) == record.1)
            #expect(memory.load(UInt64.self, at: at + 16) == record.2)
            #expect(memory.load(UInt32.self, at: at + 24) == record.3)
        }
        let ext = base + 80 + 32 * 3
        #expect(memory.load(UInt64.self, at: ext) == 0xFFFF_FFFF_8000_0000)
        #expect(memory.load(UInt32.self, at: ext + 8) == 3)
        #expect(image.bootInfo.byteCount == 80 + 3 * 32 + 16)
    }

    @Test("extra mappings come first, segments after; the extension follows them all; --entry is what it names")
    func bootInfoWithMappings() throws {
        var configuration = try elfConfiguration("hello64", entry: 0xFFFF_FFFF_8000_0010)
        configuration.extraMappings = [
            Mapping(physicalBase: 0x40_0000, virtualBase: 0x4000_0000, length: 0x1000, kind: .readWrite)
        ]
        let image = try BootImage(configuration: configuration, allowedLeafSizes: [])
        let memory = image.memory
        let base = Layout.bootInfoAddress
        #expect(memory.load(UInt32.self, at: base + 60) == 4)
        #expect(memory.load(UInt64.self, at: base + 80) == 0x4000_0000)
        #expect(memory.load(UInt32.self, at: base + 80 + 24) == 1)  // write, not a segment
        #expect(memory.load(UInt32.self, at: base + 80 + 32 + 24) == 0x12)
        #expect(memory.load(UInt64.self, at: base + 80 + 4 * 32) == 0xFFFF_FFFF_8000_0010)
    }

    @Test("a flat image keeps the version-1 block byte for byte: no extension")
    func flatStaysVersion1() throws {
        var configuration = MachineConfiguration(architecture: .amd64, image: try guest("hello64"))
        configuration.extraMappings = [
            Mapping(physicalBase: 0x40_0000, virtualBase: 0x4000_0000, length: 0x1000, kind: .readWrite)
        ]
        let image = try BootImage(configuration: configuration, allowedLeafSizes: [])
        #expect(image.memory.load(UInt32.self, at: Layout.bootInfoAddress + 4) == 1)
        #expect(image.bootInfo.byteCount == 80 + 32)
        #expect(image.memory.read(at: Layout.bootInfoAddress + 112, count: 16) == [UInt8](repeating: 0, count: 16))
    }
}

@Suite("ELF images against this machine's layout: one line each")
struct ELFLayoutRefusalTests {
    func expectError(
        _ configuration: MachineConfiguration, _ message: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            _ = try BootImage(configuration: configuration, allowedLeafSizes: [])
            Issue.record("accepted", sourceLocation: sourceLocation)
        } catch {
            #expect(error.description == message, sourceLocation: sourceLocation)
        }
        // The CLI asks the same before reading the segments' bytes.
        guard case .elf(let elf) = configuration.imageKind else { return }
        #expect(throws: (any Error).self, sourceLocation: sourceLocation) {
            try configuration.validateLayout(elf: elf.layout)
        }
    }

    func configuration(_ edit: (inout ELFBuilder) -> Void) throws -> MachineConfiguration {
        var builder = ELFBuilder()
        edit(&builder)
        return MachineConfiguration(elf: try builder.parse())
    }

    @Test func outsideRAM() throws {
        expectError(
            try configuration { $0.headers[1].physicalAddress = 0x100_0000 },
            "ELF segment 1 (physical 0x1000000-0x1001fff) is outside guest RAM (16 MiB)")
    }
    @Test func lowMemory() throws {
        expectError(
            try configuration { $0.headers[1].physicalAddress = 0x7_F000 },
            "ELF segment 1 (physical 0x7f000-0x80fff) overlaps low memory below 0x80000 (page 0, GDT, boot information, stack)"
        )
        expectError(
            try configuration { $0.headers[1].virtualAddress = 0x2000 },
            "ELF segment 1 (virtual 0x2000-0x3fff) overlaps low memory below 0x80000 (page 0, GDT, boot information, stack)"
        )
    }
    @Test func arena() throws {
        var top = try configuration { $0.headers[1].physicalAddress = 0xFF_0000 }
        let plan = try BootImage(
            configuration: MachineConfiguration(elf: try ELFBuilder().parse()), allowedLeafSizes: [])
        let scratch = plan.arenaBase - Layout.copyOnWriteScratchSize
        expectError(
            top,
            "ELF segment 1 (physical 0xff0000-0xff1fff) overlaps the copy-on-write scratch and page-table arena at 0x\(String(scratch, radix: 16)): use more --memory"
        )
        top = try configuration { $0.headers[1].virtualAddress = 0xFF_0000 }
        expectError(
            top,
            "ELF segment 1 (virtual 0xff0000-0xff1fff) overlaps the copy-on-write scratch and page-table arena at 0x\(String(scratch, radix: 16))"
        )
    }
    @Test func memoryTooSmall() throws {
        var small = try configuration { _ in }
        small.memorySize = 0x8_1000
        #expect(throws: (any Error).self) { try BootImage(configuration: small, allowedLeafSizes: []) }
        do {
            _ = try BootImage(configuration: small, allowedLeafSizes: [])
        } catch {
            #expect(
                error.description.hasPrefix("memory 516 KiB is too small: this guest and its page tables need at least")
            )
        }
    }
    @Test func entryOverride() throws {
        var edited = try configuration { _ in }
        edited.entryPoint = 0xFFFF_FFFF_8000_1000
        expectError(edited, "entry point 0xffffffff80001000 is not inside an executable ELF segment")
    }
    @Test func architecture() throws {
        var edited = try configuration { _ in }
        edited.architecture = .i686
        expectError(edited, "the ELF image is for amd64, but the machine is i686")
    }
    @Test func tooManyRecords() throws {
        var edited = try configuration { builder in
            builder.headers = (0..<120).map { i in
                .init(
                    flags: 5, offset: 0x3000, virtualAddress: 0x40_0000 + UInt64(i) * 0x1000,
                    physicalAddress: 0x40_0000 + UInt64(i) * 0x1000, fileSize: 0, memorySize: 0x10)
            }
            builder.entry = 0x40_0000
        }
        edited.extraMappings = (0..<6).map { i in
            Mapping(
                physicalBase: 0x20_0000, virtualBase: 0x1_0000_0000 + UInt64(i) << 12, length: 0x1000, kind: .readOnly)
        }
        expectError(
            edited, "120 ELF segments and 6 extra mappings are more than the 125 the boot-information block can list")
    }
    @Test("an extra mapping may not cover a segment's pages, nor widen the permissions of its frames")
    func extraMappings() throws {
        var edited = try configuration { _ in }
        let overText = Mapping(
            physicalBase: 0x30_0000, virtualBase: 0xFFFF_FFFF_8000_0000, length: 0x1000, kind: .readWrite)
        edited.extraMappings = [overText]
        expectError(edited, "mapping \(overText) overlaps the virtual pages of ELF segment 0")
        let writableText = Mapping(physicalBase: 0x10_0000, virtualBase: 0x4000_0000, length: 0x1000, kind: .readWrite)
        edited.extraMappings = [writableText]
        expectError(edited, "mapping \(writableText) would make the frames of ELF segment 0 (r-x) writable")
        let executableData = Mapping(
            physicalBase: 0x10_2000, virtualBase: 0x4000_0000, length: 0x1000, kind: .readExecute)
        edited.extraMappings = [executableData]
        expectError(edited, "mapping \(executableData) would make the frames of ELF segment 1 (rw-) executable")
    }
    @Test("extra mappings that keep the segments' permissions are accepted, and W^X holds with them")
    func harmlessMappings() throws {
        var edited = try configuration { _ in }
        edited.extraMappings = [
            Mapping(physicalBase: 0x10_0000, virtualBase: 0x4000_0000, length: 0x1000, kind: .readExecute),
            Mapping(
                physicalBase: 0x10_0000, virtualBase: 0x4000_1000, length: 0x1000, kind: .copyOnWrite(executable: true)),
            Mapping(physicalBase: 0x10_1000, virtualBase: 0x4000_2000, length: 0x2000, kind: .readOnly),
        ]
        let image = try BootImage(configuration: edited, allowedLeafSizes: [])
        guard case .elf(let elf) = edited.imageKind else { return }
        #expect(try writeXorExecuteViolations(image, segments: elf.layout.segments) == [])
        // On i686 (no NX), "x" over a data segment's frames adds nothing, so it is accepted.
        var narrow = MachineConfiguration(elf: try ELFBuilder.i686.parse())
        narrow.extraMappings = [
            Mapping(physicalBase: 0x10_1000, virtualBase: 0x4000_0000, length: 0x1000, kind: .readExecute)
        ]
        _ = try BootImage(configuration: narrow, allowedLeafSizes: [])
    }
}
