@_spi(Testing) import MicroVM
import PageTables

// The probe scenarios: layouts, memory contents, probes and the report each must give, written out by hand
// from the mappings. The suites run them on KVM (ProbeTests.swift) and under QEMU (QEMUOracleTests.swift).

enum Scenarios {
    /// i686 with 4 KiB leaves: high addresses, VA != PA, aliases both ways, read-only and executable pages,
    /// the top page of the space, an 8-byte read whose second half faults, faults of every kind.
    static func i686Small() throws -> ProbeScenario {
        let image = try leadingBytes("probe32", 4)
        return ProbeScenario(
            architecture: .i686, memorySize: 16 << 20, leafSizes: [],
            mappings: [
                Mapping(physicalBase: 0x20_0000, virtualBase: 0xC000_0000, length: 0x2000, kind: .readWrite),
                Mapping(physicalBase: 0x20_0000, virtualBase: 0xC010_0000, length: 0x1000, kind: .readWrite),  // alias
                Mapping(physicalBase: 0x30_0000, virtualBase: 0x4000_0000, length: 0x1000, kind: .readOnly),
                Mapping(physicalBase: 0x30_1000, virtualBase: 0x4000_1000, length: 0x1000, kind: .readExecute),
                Mapping(physicalBase: 0x30_2000, virtualBase: 0xFFFF_F000, length: 0x1000, kind: .readWrite),  // top page
            ],
            patterned: [(0x20_0000, 0x2000), (0x30_0000, 0x1000), (0x30_2000, 0x1000), (0x50_0000, 0x1000)],
            returns: [0x30_1000],
            cases: [
                ProbeCase(.read(0xC000_0000, 8), .ok(pattern(0x20_0000, 8))),  // high address, VA != PA
                ProbeCase(.read(0xC000_0FFC, 4), .ok(pattern(0x20_0FFC, 4))),
                ProbeCase(.read(0xC000_1003, 1), .ok(pattern(0x20_1003, 1))),  // second page
                ProbeCase(.read(0xC010_0010, 2), .ok(pattern(0x20_0010, 2))),  // through the alias
                ProbeCase(.write(0xC000_0020, 4, 0xDEAD_BEEF), .ok()),
                ProbeCase(.read(0xC010_0020, 4), .ok(0xDEAD_BEEF)),  // the alias sees the write
                ProbeCase(.write(0xC010_0040, 8, 0x0123_4567_89AB_CDEF), .ok()),
                ProbeCase(.read(0xC000_0040, 8), .ok(0x0123_4567_89AB_CDEF)),  // and the other way round
                ProbeCase(.write(0xC000_0021, 1, 0x77), .ok()),
                ProbeCase(.read(0xC010_0020, 4), .ok(0xDEAD_77EF)),
                ProbeCase(.write(0xC000_0FFE, 2, 0xA55A), .ok()),
                ProbeCase(.read(0xC010_0FFE, 2), .ok(0xA55A)),
                ProbeCase(.read(0x4000_0000, 4), .ok(pattern(0x30_0000, 4))),  // read-only is readable
                ProbeCase(.write(0x4000_0010, 4, 1), .pageFault(error: errorPresent | errorWrite)),
                ProbeCase(.read(0x4000_0010, 4), .ok(pattern(0x30_0010, 4))),  // the write did not land
                ProbeCase(.read(0x5000_0000, 4), .pageFault(error: 0)),  // unmapped
                ProbeCase(.write(0x5000_0004, 4, 1), .pageFault(error: errorWrite)),
                ProbeCase(.read(0x10, 1), .pageFault(error: 0)),  // page 0
                ProbeCase(.execute(0x4000_1000), .ok()),
                ProbeCase(.execute(0x5000_0000), .pageFault(error: 0)),  // no NX on i686: no I/D bit either
                ProbeCase(.invalidate(0xC000_0000), .ok()),
                ProbeCase(.read(0xC000_0020, 4), .ok(0xDEAD_77EF)),  // after invlpg
                ProbeCase(.read(0xFFFF_F000, 4), .ok(pattern(0x30_2000, 4))),
                ProbeCase(.read(0xFFFF_FFF8, 8), .ok(pattern(0x30_2FF8, 8))),  // the last 8 bytes of the space
                // Two 4-byte reads: the first (0xC0001FFC) succeeds, the second (0xC0002000) faults at slot + 2.
                ProbeCase(.read(0xC000_1FFC, 8), .pageFault(error: 0, cr2: 0xC000_2000, rip: 0x10_0042)),
                ProbeCase(.read(0x50_0000, 4), .ok(pattern(0x50_0000, 4))),  // identity-mapped RAM
                ProbeCase(.write(0x50_0000, 4, 0x600D_F00D), .ok()),
                ProbeCase(.read(0x50_0000, 4), .ok(0x600D_F00D)),
                ProbeCase(.read(0x10_0000, 4), .ok(image)),  // the guest's own first bytes
                ProbeCase(Probe(.write, 0xC000_0000, size: 3, value: 0), .invalid),
            ])
    }

    /// i686 with 4 MiB leaves: 4 MiB-aligned mappings, so every one of them is a single PSE leaf.
    static func i686Large() -> ProbeScenario {
        ProbeScenario(
            architecture: .i686, memorySize: 16 << 20, leafSizes: [.size4M],
            mappings: [
                Mapping(physicalBase: 0x40_0000, virtualBase: 0xC000_0000, length: 4 << 20, kind: .readWrite),
                Mapping(physicalBase: 0x40_0000, virtualBase: 0xC080_0000, length: 4 << 20, kind: .readWrite),  // alias
                Mapping(physicalBase: 0x80_0000, virtualBase: 0x4000_0000, length: 4 << 20, kind: .readOnly),
                Mapping(physicalBase: 0x40_0000, virtualBase: 0xFFC0_0000, length: 4 << 20, kind: .readExecute),
            ],
            patterned: [(0x40_0000, 0x1000), (0x7F_F000, 0x1000), (0x80_0000, 0x1000), (0xBF_F000, 0x1000)],
            returns: [0x5F_F000],
            cases: [
                ProbeCase(.read(0xC000_0000, 8), .ok(pattern(0x40_0000, 8))),
                ProbeCase(.read(0xC03F_FFFC, 4), .ok(pattern(0x7F_FFFC, 4))),  // last dword of the leaf
                ProbeCase(.read(0xC080_0008, 8), .ok(pattern(0x40_0008, 8))),  // alias
                ProbeCase(.write(0xC000_0100, 4, 0x1234_5678), .ok()),
                ProbeCase(.read(0xC080_0100, 4), .ok(0x1234_5678)),
                ProbeCase(.read(0xFFC0_0100, 4), .ok(0x1234_5678)),
                ProbeCase(.read(0x40_0100, 4), .ok(0x1234_5678)),  // identity map of RAM, also a 4 MiB leaf
                ProbeCase(.write(0x40_0200, 8, 0xFEDC_BA98_7654_3210), .ok()),
                ProbeCase(.read(0xC000_0200, 8), .ok(0xFEDC_BA98_7654_3210)),
                ProbeCase(.read(0x4000_0000, 4), .ok(pattern(0x80_0000, 4))),
                ProbeCase(.read(0x403F_FFFC, 4), .ok(pattern(0xBF_FFFC, 4))),
                ProbeCase(.write(0x403F_FFF0, 4, 1), .pageFault(error: errorPresent | errorWrite)),
                ProbeCase(.write(0xFFC0_0000, 1, 1), .pageFault(error: errorPresent | errorWrite)),
                ProbeCase(.execute(0xFFDF_F000), .ok()),
                ProbeCase(.read(0x5000_0000, 4), .pageFault(error: 0)),
                ProbeCase(.read(0xC040_0000, 4), .pageFault(error: 0)),  // right after the first leaf
                ProbeCase(.invalidate(0xC000_0000), .ok()),
                ProbeCase(.read(0xC000_0100, 4), .ok(0x1234_5678)),
                ProbeCase(.read(0xFFFF_FFF8, 8), .ok(pattern(0x7F_FFF8, 8))),
            ])
    }

    /// amd64 with 1 GiB leaves (or, with `allowed` = [.size2M], the same mappings split into 2 MiB leaves:
    /// that variant also runs on KVM here).
    static func amd64Huge(allowed: AllowedLeafSizes = [.size2M, .size1G]) throws -> ProbeScenario {
        let image = try leadingBytes("probe64", 8)
        let v1: UInt64 = 0x1122_3344_5566_7788
        return ProbeScenario(
            architecture: .amd64, memorySize: 32 << 20, leafSizes: allowed,
            mappings: [
                Mapping(physicalBase: 0, virtualBase: 0xFFFF_8000_0000_0000, length: 1 << 30, kind: .readWrite),
                Mapping(physicalBase: 0, virtualBase: 0x1_0000_0000, length: 1 << 30, kind: .readWrite),  // above 4 GiB
                Mapping(physicalBase: 0, virtualBase: 0x4000_0000, length: 1 << 30, kind: .readOnly),
                Mapping(physicalBase: 0, virtualBase: 0x8000_0000, length: 1 << 30, kind: .readExecute),
                Mapping(physicalBase: 0, virtualBase: 0xFFFF_FFFF_C000_0000, length: 1 << 30, kind: .readWriteExecute),
            ],
            patterned: [(0x20_0000, 0x1000), (0x40_0000, 0x1000)],
            returns: [0x30_0000],
            cases: [
                ProbeCase(.read(0xFFFF_8000_0020_0000, 8), .ok(pattern(0x20_0000, 8))),  // upper half
                ProbeCase(.read(0x1_0020_0008, 8), .ok(pattern(0x20_0008, 8))),  // above 4 GiB
                ProbeCase(.read(0x4020_0010, 4), .ok(pattern(0x20_0010, 4))),
                ProbeCase(.read(0x8020_0012, 2), .ok(pattern(0x20_0012, 2))),
                ProbeCase(.read(0xFFFF_FFFF_C020_0013, 1), .ok(pattern(0x20_0013, 1))),  // top GiB
                ProbeCase(.write(0xFFFF_8000_0020_0100, 8, v1), .ok()),
                ProbeCase(.read(0x1_0020_0100, 8), .ok(v1)),  // aliases see the write
                ProbeCase(.read(0x4020_0100, 8), .ok(v1)),
                ProbeCase(.read(0x20_0100, 8), .ok(v1)),  // identity map of RAM (2 MiB leaf)
                ProbeCase(.write(0x4020_0108, 8, 1), .pageFault(error: errorPresent | errorWrite)),
                ProbeCase(.read(0x1_0020_0108, 8), .ok(pattern(0x20_0108, 8))),  // the write did not land
                ProbeCase(.write(0x20_0200, 4, 0xCAFE_F00D), .ok()),
                ProbeCase(.read(0xFFFF_FFFF_C020_0200, 4), .ok(0xCAFE_F00D)),
                ProbeCase(.execute(0x8030_0000), .ok()),
                ProbeCase(.execute(0xFFFF_FFFF_C030_0000), .ok()),
                ProbeCase(.execute(0x4030_0000), .pageFault(error: errorPresent | errorFetch)),  // NX
                ProbeCase(.execute(0xFFFF_8000_0030_0000), .pageFault(error: errorPresent | errorFetch)),
                ProbeCase(.execute(0x30_0000), .pageFault(error: errorPresent | errorFetch)),  // RAM is NX
                ProbeCase(.read(0xC000_0000, 8), .pageFault(error: 0)),  // unmapped
                ProbeCase(.write(0xC000_0000, 4, 1), .pageFault(error: errorWrite)),
                ProbeCase(.execute(0x7F_0000_0000), .pageFault(error: errorFetch)),
                ProbeCase(.read(0x10, 8), .pageFault(error: 0)),  // page 0 is unmapped at VA 0 ...
                ProbeCase(.read(0xFFFF_8000_0000_0010, 8), .ok(0)),  // ... but PA 0 is reachable
                ProbeCase(.invalidate(0xFFFF_8000_0020_0000), .ok()),
                ProbeCase(.read(0xFFFF_8000_0020_0100, 8), .ok(v1)),
                ProbeCase(.read(0x1_0010_0000, 8), .ok(image)),  // the guest's own first bytes
                ProbeCase(.read(0xFFFF_8000_0040_0FF8, 8), .ok(pattern(0x40_0FF8, 8))),
                ProbeCase(.write(0x1_0040_0000, 2, 0xBEEF), .ok()),
                ProbeCase(.read(0xFFFF_8000_0040_0000, 2), .ok(0xBEEF)),
                ProbeCase(.read(0xFFFF_8000_0040_0000, 4), .ok(pattern(0x40_0000, 4) & 0xFFFF_0000 | 0xBEEF)),
                ProbeCase(Probe(.read, 0x20_0000, size: 16), .invalid),
            ])
    }

    /// amd64 on this machine's KVM: VA != PA in a 2 MiB-able range, a read-only alias, the upper half, above
    /// 4 GiB, NX and executable pages, a copy-on-write range (2 MiB-able, split by the host on the first
    /// write) with a read-only view of its first frame. `leafSizes`: none, or this host's (2 MiB).
    static func amd64OnKVM(leafSizes: AllowedLeafSizes) -> ProbeScenario {
        ProbeScenario(
            architecture: .amd64, leafSizes: leafSizes,
            mappings: [
                Mapping(physicalBase: 0x20_0000, virtualBase: 0x4000_0000, length: 0x20_0000, kind: .readWrite),
                Mapping(physicalBase: 0x20_0000, virtualBase: 0x4020_0000, length: 0x1000, kind: .readOnly),  // alias
                Mapping(physicalBase: 0x30_0000, virtualBase: 0xFFFF_8000_0000_0000, length: 0x2000, kind: .readWrite),
                Mapping(physicalBase: 0x31_0000, virtualBase: 0x1_0000_0000, length: 0x1000, kind: .readWrite),  // > 4 GiB
                Mapping(physicalBase: 0x32_0000, virtualBase: 0x5000_0000, length: 0x1000, kind: .readWrite),  // NX
                Mapping(physicalBase: 0x32_1000, virtualBase: 0x5000_1000, length: 0x1000, kind: .readExecute),
                Mapping(
                    physicalBase: 0x40_0000, virtualBase: 0x6000_0000, length: 0x20_0000,
                    kind: .copyOnWrite(executable: false)),
                Mapping(physicalBase: 0x40_0000, virtualBase: 0x6100_0000, length: 0x1000, kind: .readOnly),  // the frame
            ],
            qwords: [
                (0x20_0000, 0x1122_3344_5566_7788), (0x30_0000, 0xAABB_CCDD_EEFF_0011), (0x31_0000, 0x600D_CAFE),
                (0x40_0010, 0x5555_5555_5555_5555), (0x40_1010, 0x6666_6666_6666_6666),
            ],
            returns: [0x32_0000, 0x32_1000],  // the first would return if it could run
            cases: [
                ProbeCase(.read(0x4000_0000, 8), .ok(0x1122_3344_5566_7788)),
                ProbeCase(.write(0x4000_0008, 8, 0xCAFE_F00D), .ok()),
                ProbeCase(.read(0x4020_0008, 8), .ok(0xCAFE_F00D)),  // the alias sees the write
                ProbeCase(.read(0xFFFF_8000_0000_0000, 8), .ok(0xAABB_CCDD_EEFF_0011)),
                ProbeCase(.write(0xFFFF_8000_0000_1000, 8, 0x0123_4567_89AB_CDEF), .ok()),
                ProbeCase(.read(0x1_0000_0000, 4), .ok(0x600D_CAFE)),
                ProbeCase(.write(0x4020_0000, 8, 1), .pageFault(error: errorPresent | errorWrite)),  // read-only
                ProbeCase(.read(0x7000_0000, 8), .pageFault(error: 0)),  // unmapped
                ProbeCase(.execute(0x5000_0000), .pageFault(error: errorPresent | errorFetch)),  // NX
                ProbeCase(.execute(0x5000_1000), .ok()),  // a `ret` there
                ProbeCase(.write(0x6000_0010, 8, 0x7777), .ok()),  // copy-on-write, resolved by the host
                ProbeCase(.read(0x6000_0010, 8), .ok(0x7777)),
                ProbeCase(.read(0x6100_0010, 8), .ok(0x5555_5555_5555_5555)),  // the original frame is unchanged
                ProbeCase(.read(0x6000_1010, 8), .ok(0x6666_6666_6666_6666)),  // the rest: still the original
                ProbeCase(.invalidate(0x4000_0000), .ok()),
                ProbeCase(.read(0x4000_0000, 2), .ok(0x7788)),
            ])
    }
}
