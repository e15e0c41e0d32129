import MicroVM
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
                0x0000000000600000-0x0000000000766fff -> 0x0000000000600000-0x0000000000766fff    1.4 MiB  rw--   4 KiB
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
                0x00001000-0x00777fff -> 0x00001000-0x00777fff    7.4 MiB  rwx-   4 KiB
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
