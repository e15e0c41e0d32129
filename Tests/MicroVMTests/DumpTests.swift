@_spi(Testing) import MicroVM
import PageTables
import PageTablesTestSupport
import Testing

/// The table dump of a small layout, exactly, in each mode (built without KVM).
@Suite("table dump")
struct DumpTests {
    func image(_ architecture: Architecture, _ allowed: AllowedLeafSizes, extra: [Mapping]) throws -> BootImage {
        var configuration = MachineConfiguration(architecture: architecture, image: [0xF4])
        configuration.memorySize = 8 << 20
        configuration.extraMappings = extra
        return try BootImage(configuration: configuration, allowedLeafSizes: allowed)
    }

    @Test("amd64 with 2 MiB leaves, an upper-half alias and a copy-on-write user page")
    func amd64() throws {
        let image = try image(
            .amd64, [.size2M],
            extra: [
                Mapping(
                    physicalBase: 0x20_0000, virtualBase: 0xFFFF_8000_0000_0000, length: 0x40_0000,
                    kind: .readWriteExecute),
                Mapping(
                    physicalBase: 0x30_0000, virtualBase: 0x1_0000_0000, length: 0x1000,
                    kind: .copyOnWrite(executable: false), userAccessible: true),
            ])
        let arena = image.arenaBase
        // 89 arena tables (RAM, two extra mappings, root, 64 spare) and 64 scratch frames below them.
        #expect(arena == 0x7A_7000)
        #expect(
            try image.addressSpace.dump() == """
                0x0000000000001000-0x00000000000fffff -> 0x0000000000001000-0x00000000000fffff   1020 KiB  rw--   4 KiB
                0x0000000000100000-0x0000000000100fff -> 0x0000000000100000-0x0000000000100fff      4 KiB  rwx-   4 KiB
                0x0000000000101000-0x00000000001fffff -> 0x0000000000101000-0x00000000001fffff   1020 KiB  rw--   4 KiB
                0x0000000000200000-0x00000000005fffff -> 0x0000000000200000-0x00000000005fffff      4 MiB  rw--   2 MiB
                0x0000000000600000-0x0000000000766fff -> 0x0000000000600000-0x0000000000766fff   1436 KiB  rw--   4 KiB
                0x00000000007a7000-0x00000000007fffff -> 0x00000000007a7000-0x00000000007fffff    356 KiB  rw--   4 KiB
                0x0000000100000000-0x0000000100000fff -> 0x0000000000300000-0x0000000000300fff      4 KiB  r--uc  4 KiB
                0xffff800000000000-0xffff8000003fffff -> 0x0000000000200000-0x00000000005fffff      4 MiB  rwx-   2 MiB

                """)
    }

    // i686 has no NX: every present page is executable, so RAM and image merge into one run; the scratch
    // frames (0x778000-0x7b7fff) are the hole before the arena.
    @Test("i686 with 4 MiB leaves and a mapping above 3 GiB")
    func i686() throws {
        let image = try image(
            .i686, [.size4M],
            extra: [
                Mapping(physicalBase: 0x40_0000, virtualBase: 0xC000_0000, length: 0x40_0000, kind: .readOnly)
            ])
        #expect(image.addressSpace.requiresPageSizeExtension)
        #expect(
            try image.addressSpace.dump() == """
                0x00001000-0x00777fff -> 0x00001000-0x00777fff   7644 KiB  rwx-   4 KiB
                0x007b8000-0x007fffff -> 0x007b8000-0x007fffff    288 KiB  rwx-   4 KiB
                0xc0000000-0xc03fffff -> 0x00400000-0x007fffff      4 MiB  r-x-   4 MiB

                """)
    }
}

/// The README's engine example, so the front door stays true.
@Test("the README engine example runs as documented")
func readmeExample() throws {
    var tables = PageTable(ops: ArrayTableOps<AMD64>(), allowedLeafSizes: [.size2M])
    try tables.map(.identity(0x20_0000, length: 0x40_0000, kind: .readWrite))
    try tables.map(
        Mapping(
            physicalBase: 0x1000, virtualBase: 0xFFFF_8000_0000_0000, length: 0x1000,
            kind: .copyOnWrite(executable: false)))
    try tables.protect(virtualBase: 0x20_1000, length: 0x1000, kind: .readOnly)
    let t = try #require(try tables.lookup(0x20_1234))
    #expect(t.physicalAddress == 0x20_1234 && t.kind == .readOnly && t.leafSize == .size4K)
    #expect(try tables.coalescedTranslate(virtualBase: 0, length: 1 << 47).count == 4)
}

/// A guest can rewrite its tables into shapes whose full dump would be billions of lines: the dump stays
/// bounded in lines, tables walked and memory, and says where it stopped.
@Suite("table dump over tables a guest rewrote")
struct HostileDumpTests {
    /// An amd64 image with 4 KiB leaves, and the physical addresses of its PML4, the PDPT and PD below
    /// entry 0, and the PT that maps 2-4 MiB.
    func image() throws -> (image: BootImage, pml4: UInt64, pdpt: UInt64, pd: UInt64, pt: UInt64) {
        var configuration = MachineConfiguration(architecture: .amd64, image: [0xF4])
        configuration.memorySize = 64 << 20
        let image = try BootImage(configuration: configuration, allowedLeafSizes: [])
        let memory = image.memory
        let pml4 = image.addressSpace.rootPhysicalAddress
        let pdpt = memory.load(UInt64.self, at: pml4)! & AMD64.frameAddressMask
        let pd = memory.load(UInt64.self, at: pdpt)! & AMD64.frameAddressMask
        let pt = memory.load(UInt64.self, at: pd + 8)! & AMD64.frameAddressMask
        return (image, pml4, pdpt, pd, pt)
    }

    @Test("every PML4, PDPT and PD entry aliased onto one page table: 1,000 lines, then counts and a stop")
    func aliasedTables() throws {
        let (image, pml4, pdpt, pd, pt) = try image()
        let memory = image.memory
        for index in UInt64(0)..<256 { memory.store(pdpt | 0x7, at: pml4 + index * 8) }
        for index in UInt64(0)..<512 {
            memory.store(pd | 0x7, at: pdpt + index * 8)
            memory.store(pt | 0x7, at: pd + index * 8)
        }
        let dump = image.addressSpace.dump()
        let lines = dump.split(separator: "\n")
        #expect(lines.count == 1002)
        #expect(lines[1000].hasPrefix("... ") && lines[1000].hasSuffix(" more ranges not shown (at most 1000 lines)"))
        #expect(
            lines[1001]
                == "... the walk stopped: the walk entered more than 4096 tables: the tables reference themselves or each other"
        )
        #expect(dump.utf8.count < 150_000)
    }

    @Test("a PML4 entry that points at the PML4 itself: a finite walk, a bounded dump")
    func selfReference() throws {
        let (image, pml4, _, _, _) = try image()
        // Each step through the entry goes one level down, so the walk ends; its leaves are the root's
        // tables read as pages, and the dump stays within its line budget.
        image.memory.store(pml4 | 0x3, at: pml4 + 8 * 5)
        let dump = image.addressSpace.dump()
        #expect(dump.split(separator: "\n").count <= 1002)
        #expect(dump.utf8.count < 150_000)
        #expect(dump.contains("0x0000028000000000-"))  // PML4 entry 5 maps from 5 << 39
    }

    @Test("an entry pointing outside RAM ends the dump with one line naming it")
    func outsideRAM() throws {
        let (image, pml4, _, _, _) = try image()
        image.memory.store(UInt64(0x7_0000_0000) | 0x3, at: pml4 + 8 * 7)
        let lines = image.addressSpace.dump().split(separator: "\n")
        #expect(
            lines.last
                == "... the walk stopped: entry 0x700000003 at level 3 for 0x38000000000 references a table outside table memory"
        )
    }
}
