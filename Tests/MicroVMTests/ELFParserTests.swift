import MicroVM
import PageTables
import Testing

@Suite("ELF parser: what it accepts")
struct ELFParserAcceptTests {
    @Test("the default test file: two segments, their permissions, file bytes and page ranges")
    func twoSegments() throws {
        let builder = ELFBuilder()
        let image = try builder.parse()
        let layout = image.layout
        #expect(layout.architecture == .amd64)
        #expect(layout.entryPoint == 0xFFFF_FFFF_8000_0000)
        #expect(layout.segments.count == 2)
        let text = layout.segments[0]
        let data = layout.segments[1]
        #expect(text.permissions == [.readable, .executable])
        #expect(text.kind == .readExecute)
        #expect(data.kind == .readWrite)
        #expect(
            data.mapping
                == Mapping(
                    physicalBase: 0x10_1000, virtualBase: 0xFFFF_FFFF_8000_1000, length: 0x2000, kind: .readWrite))
        let bytes = builder.bytes
        #expect(image.contents[0] == Array(bytes[0x1000..<0x1100]))
        #expect(image.contents[1] == Array(bytes[0x2000..<0x2010]))
    }

    @Test("ELF32 for i686")
    func i686() throws {
        let layout = try ELFBuilder.i686.parse().layout
        #expect(layout.architecture == .i686)
        #expect(layout.entryPoint == 0xC000_0000)
        #expect(layout.segments.map(\.pageVirtualBase) == [0xC000_0000, 0xC000_1000])
    }

    @Test("the committed guests parse, each segment on its own pages")
    func committedGuests() throws {
        let amd64 = try ELFLayout(bytes: try elfGuest("hello64"), architecture: .amd64)
        #expect(
            amd64.segments.map(\.mapping) == [
                Mapping(
                    physicalBase: 0x10_0000, virtualBase: 0xFFFF_FFFF_8000_0000, length: 0x1000, kind: .readExecute),
                Mapping(physicalBase: 0x10_1000, virtualBase: 0xFFFF_FFFF_8000_1000, length: 0x1000, kind: .readOnly),
                Mapping(physicalBase: 0x10_2000, virtualBase: 0xFFFF_FFFF_8000_2000, length: 0x3000, kind: .readWrite),
            ])
        #expect(amd64.segments[2].fileSize < amd64.segments[2].memorySize)
        let i686 = try ELFLayout(bytes: try elfGuest("hello32"), architecture: .i686)
        #expect(i686.segments.map(\.pageVirtualBase) == [0xC000_0000, 0xC000_1000, 0xC000_2000])
        #expect(i686.entryPoint == 0xC000_0000)
    }

    @Test("other program headers, zero-size PT_LOADs and p_align are ignored")
    func ignored() throws {
        var builder = ELFBuilder()
        builder.headers.append(
            .init(type: 4, flags: 0, offset: 0, virtualAddress: 0, physicalAddress: 0, fileSize: 8, memorySize: 8))
        builder.headers.append(
            .init(flags: 7, offset: 0x10, virtualAddress: 0x10, physicalAddress: 0x10, fileSize: 0, memorySize: 0))
        builder.headers[0].align = 3  // not a power of two: not used
        let layout = try builder.parse().layout
        #expect(layout.segments.map(\.index) == [0, 1])
    }

    @Test("two segments may share a page when they agree on its permissions and placement")
    func sharedPage() throws {
        var builder = ELFBuilder()
        builder.headers[1].flags = 5
        builder.headers[1].virtualAddress = 0xFFFF_FFFF_8000_0100
        builder.headers[1].physicalAddress = 0x10_0100
        let layout = try builder.parse().layout
        #expect(layout.segments[1].pageVirtualBase == 0xFFFF_FFFF_8000_0000)
    }

    @Test("a segment that starts mid-page maps the whole page; an upper-half segment may end at 2^64")
    func unalignedAndTop() throws {
        var builder = ELFBuilder()
        builder.headers[1].virtualAddress = 0xFFFF_FFFF_FFFF_E800
        builder.headers[1].physicalAddress = 0x20_0800
        builder.headers[1].memorySize = 0x1800
        let segment = try builder.parse().layout.segments[1]
        #expect(
            segment.mapping
                == Mapping(
                    physicalBase: 0x20_0000, virtualBase: 0xFFFF_FFFF_FFFF_E000, length: 0x2000, kind: .readWrite))
    }
}

@Suite("ELF parser: every refusal is one line naming the problem")
struct ELFParserRefusalTests {
    func expectError(
        _ builder: ELFBuilder, _ message: String, as architecture: Architecture? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let error = elfError(builder.bytes, architecture ?? builder.architecture)
        #expect(error?.description == message, sourceLocation: sourceLocation)
    }

    @Test func notELF() {
        #expect(elfError(Array("hello".utf8))?.description == "not an ELF file (no \\x7fELF magic)")
    }
    @Test func truncatedIdentification() {
        #expect(
            elfError(Array(ELFBuilder().bytes.prefix(10)))?.description
                == "truncated ELF header: 16 bytes needed, the file has 10")
    }
    @Test func truncatedHeader() {
        #expect(
            elfError(Array(ELFBuilder().bytes.prefix(40)))?.description
                == "truncated ELF header: 64 bytes needed, the file has 40")
        #expect(
            elfError(Array(ELFBuilder.i686.bytes.prefix(51)), .i686)?.description
                == "truncated ELF header: 52 bytes needed, the file has 51")
    }
    @Test func unknownClass() {
        var builder = ELFBuilder()
        builder.fileClass = 3
        expectError(builder, "unknown ELF class 3 (EI_CLASS must be 1, ELFCLASS32, or 2, ELFCLASS64)")
    }
    @Test func classMismatch() {
        expectError(ELFBuilder.i686, "ELF class ELFCLASS32 does not match amd64, which needs ELFCLASS64", as: .amd64)
        expectError(ELFBuilder(), "ELF class ELFCLASS64 does not match i686, which needs ELFCLASS32", as: .i686)
    }
    @Test func bigEndian() {
        var builder = ELFBuilder()
        builder.data = 2
        expectError(builder, "ELF data encoding 2 is not little-endian (EI_DATA must be 1, ELFDATA2LSB)")
    }
    @Test func versions() {
        var builder = ELFBuilder()
        builder.identVersion = 0
        expectError(builder, "ELF EI_VERSION 0 is not 1 (EV_CURRENT)")
        builder = ELFBuilder()
        builder.version = 2
        expectError(builder, "ELF e_version 2 is not 1 (EV_CURRENT)")
    }
    @Test func types() {
        var builder = ELFBuilder()
        builder.type = 3
        expectError(
            builder,
            "ELF type ET_DYN (3, a shared object or position-independent executable) is not an executable: link a static executable (ET_EXEC)"
        )
        builder.type = 1
        expectError(
            builder, "ELF type ET_REL (1, an object file) is not an executable: link a static executable (ET_EXEC)")
    }
    @Test func machineMismatch() {
        var builder = ELFBuilder()
        builder.machine = 3
        expectError(builder, "ELF machine EM_386 (3) does not match amd64, which needs EM_X86_64 (62)")
        var narrow = ELFBuilder.i686
        narrow.machine = 40
        expectError(narrow, "ELF machine 40 does not match i686, which needs EM_386 (3)")
    }
    @Test func programHeaderTable() {
        var builder = ELFBuilder()
        builder.programHeaderSize = 55
        expectError(builder, "program header size (e_phentsize) 55 is not 56")
        builder = ELFBuilder()
        builder.programHeaderCount = 0
        expectError(builder, "no loadable segment (PT_LOAD with a non-zero p_memsz): nothing to load")
        builder.programHeaderCount = 0xFFFF
        expectError(builder, "program header count 0xffff (PN_XNUM, extended numbering) is not supported")
        builder.programHeaderCount = 0xFFFE
        expectError(
            builder, "program headers (65534 x 56 bytes at offset 0x40) extend past the end of the file (8208 bytes)")
        var bytes = ELFBuilder().bytes
        bytes[32] = 0xF0  // e_phoff 0x40 -> 0x1ff0: the table would end at 0x2060
        bytes[33] = 0x1F
        #expect(
            elfError(bytes)?.description
                == "program headers (2 x 56 bytes at offset 0x1ff0) extend past the end of the file (8208 bytes)")
    }
    @Test func programHeaderOffsetOverflow() {
        var bytes = ELFBuilder().bytes
        for i in 0..<8 { bytes[32 + i] = 0xFF }
        #expect(
            elfError(bytes)?.description
                == "program headers (2 x 56 bytes at offset 0xffffffffffffffff) extend past the end of the file (8208 bytes)"
        )
    }
    @Test func noLoadableSegment() {
        var builder = ELFBuilder()
        builder.headers[0].type = 4
        builder.headers[1].memorySize = 0
        builder.headers[1].fileSize = 0
        expectError(builder, "no loadable segment (PT_LOAD with a non-zero p_memsz): nothing to load")
    }
    @Test func tooManySegments() {
        var builder = ELFBuilder()
        builder.headers = (0..<130).map { i in
            .init(
                flags: 5, offset: 0x4000, virtualAddress: 0x40_0000 + UInt64(i) * 0x1000,
                physicalAddress: 0x40_0000 + UInt64(i) * 0x1000, fileSize: 0, memorySize: 0x10)
        }
        builder.entry = 0x40_0000
        expectError(builder, "130 loadable segments are more than the 125 the boot-information block can list")
    }
    @Test func segmentSizes() {
        var builder = ELFBuilder()
        builder.headers[1].fileSize = 0x3000
        expectError(builder, "segment 1: file size 0x3000 exceeds memory size 0x2000")
        var bytes = ELFBuilder().bytes
        bytes[64 + 56 + 8] = 0x08  // p_offset of segment 1: 0x2000 -> 0x2008
        #expect(
            elfError(bytes)?.description
                == "segment 1: its 0x10 file bytes at offset 0x2008 extend past the end of the file (8208 bytes)")
        bytes = ELFBuilder().bytes
        for i in 0..<8 { bytes[64 + 56 + 8 + i] = 0xFF }  // p_offset of segment 1: 2^64 - 1, so the end wraps
        #expect(
            elfError(bytes)?.description
                == "segment 1: its 0x10 file bytes at offset 0xffffffffffffffff extend past the end of the file (8208 bytes)"
        )
    }
    @Test func misaligned() {
        var builder = ELFBuilder()
        builder.headers[1].physicalAddress = 0x10_1800
        expectError(
            builder,
            "segment 1: virtual address 0xffffffff80001000 and physical address 0x101800 differ modulo 4 KiB, which page tables cannot map"
        )
    }
    @Test func outsideVirtualSpace() {
        var builder = ELFBuilder()
        builder.headers[1].virtualAddress = 0x7FFF_FFFF_F000
        builder.headers[1].physicalAddress = 0x20_0000
        expectError(
            builder,
            "segment 1: 0x2000 bytes at virtual address 0x7ffffffff000 are outside the amd64 virtual address space (48-bit canonical, either half)"
        )
        builder.headers[1].virtualAddress = 0xFFFF_FFFF_FFFF_F000  // wraps past 2^64
        expectError(
            builder,
            "segment 1: 0x2000 bytes at virtual address 0xfffffffffffff000 are outside the amd64 virtual address space (48-bit canonical, either half)"
        )
        builder.headers[1].virtualAddress = 0x8000_0000_0000
        expectError(
            builder,
            "segment 1: 0x2000 bytes at virtual address 0x800000000000 are outside the amd64 virtual address space (48-bit canonical, either half)"
        )
        var narrow = ELFBuilder.i686
        narrow.headers[1].virtualAddress = 0xFFFF_F000
        narrow.headers[1].physicalAddress = 0x20_0000
        expectError(
            narrow,
            "segment 1: 0x2000 bytes at virtual address 0xfffff000 are outside the i686 virtual address space (4 GiB)")
    }
    @Test func outsidePhysicalSpace() {
        var builder = ELFBuilder()
        builder.headers[1].physicalAddress = 1 << 52
        expectError(
            builder,
            "segment 1: 0x2000 bytes at physical address 0x10000000000000 are beyond the amd64 physical address space")
        var narrow = ELFBuilder.i686
        narrow.headers[1].physicalAddress = 0xFFFF_F000
        expectError(
            narrow, "segment 1: 0x2000 bytes at physical address 0xfffff000 are beyond the i686 physical address space")
    }
    @Test func overlaps() {
        var builder = ELFBuilder()
        builder.headers[1].virtualAddress = 0xFFFF_FFFF_8000_0080
        builder.headers[1].physicalAddress = 0x20_0080
        expectError(builder, "segments 0 and 1 overlap at virtual address 0xffffffff80000080")
        builder = ELFBuilder()
        builder.headers[1].physicalAddress = 0x10_0000
        expectError(builder, "segments 0 and 1 overlap at physical address 0x100000")
    }
    @Test func sharedPages() {
        var builder = ELFBuilder()
        builder.headers[1].virtualAddress = 0xFFFF_FFFF_8000_0800
        builder.headers[1].physicalAddress = 0x10_0800
        expectError(
            builder, "segments 0 (r-x) and 1 (rw-) share the virtual page 0xffffffff80000000 with different permissions"
        )
        builder.headers[1].flags = 5
        builder.headers[1].physicalAddress = 0x20_0800
        expectError(
            builder,
            "segments 0 and 1 share the virtual page 0xffffffff80000000 but map it at different offsets (p_vaddr - p_paddr differs)"
        )
        builder = ELFBuilder()
        builder.headers[1].virtualAddress = 0xFFFF_FFFF_9000_0800
        builder.headers[1].physicalAddress = 0x10_0800
        expectError(builder, "segments 0 (r-x) and 1 (rw-) share the physical page 0x100000 with different permissions")
    }
    @Test func entry() {
        var builder = ELFBuilder()
        builder.entry = 0xFFFF_FFFF_8000_1000
        expectError(builder, "entry point 0xffffffff80001000 is not inside an executable (PF_X) segment")
        builder.entry = 0xFFFF_FFFF_8000_0100  // one past the text's last byte
        expectError(builder, "entry point 0xffffffff80000100 is not inside an executable (PF_X) segment")
    }
    @Test("a short read is a truncated file, and a read error is passed through")
    func reads() {
        let bytes = ELFBuilder().bytes
        do {
            let layout = try ELFLayout(bytes: bytes, architecture: .amd64)
            _ = try ELFImage(layout: layout) { (offset, count) throws(ELFError) in
                Array(bytes[Int(offset)..<min(bytes.count, Int(offset) + count - 1)])
            }
            Issue.record("a short read was accepted")
        } catch {
            #expect(
                error.description
                    == "segment 0: its 0x100 file bytes at offset 0x1000 extend past the end of the file (4351 bytes)")
        }
        #expect(throws: ELFError.readFailed("disk on fire")) {
            _ = try ELFLayout(fileSize: 100, architecture: .amd64) { (_, _) throws(ELFError) in
                throw .readFailed("disk on fire")
            }
        }
    }
}
