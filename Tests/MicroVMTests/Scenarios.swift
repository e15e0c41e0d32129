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
                // top page
                Mapping(physicalBase: 0x30_2000, virtualBase: 0xFFFF_F000, length: 0x1000, kind: .readWrite),
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
                // > 4 GiB
                Mapping(physicalBase: 0x31_0000, virtualBase: 0x1_0000_0000, length: 0x1000, kind: .readWrite),
                Mapping(physicalBase: 0x32_0000, virtualBase: 0x5000_0000, length: 0x1000, kind: .readWrite),  // NX
                Mapping(physicalBase: 0x32_1000, virtualBase: 0x5000_1000, length: 0x1000, kind: .readExecute),
                Mapping(
                    physicalBase: 0x40_0000, virtualBase: 0x6000_0000, length: 0x20_0000,
                    kind: .copyOnWrite(executable: false)),
                // the frame
                Mapping(physicalBase: 0x40_0000, virtualBase: 0x6100_0000, length: 0x1000, kind: .readOnly),
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

    // MARK: User mode

    /// amd64 at CPL 3 (KVM here; QEMU too): user pages readable and writable as mapped, supervisor pages
    /// faulting with U/S=1 in the error code, NX, copy-on-write of user pages through the host (and a
    /// supervisor copy-on-write page the host refuses to a user write), U/S cleared in a directory and in a
    /// PML4 entry above user leaves, `invlpg` refused. `leafSizes`: none, or 2 MiB (the user range and the
    /// copy-on-write range are 2 MiB leaves, the latter split by the host at the first write).
    static func amd64UserMode(leafSizes: AllowedLeafSizes) throws -> ProbeScenario {
        let image = try leadingBytes("probe64", 8)
        let v: UInt64 = 0x0123_4567_89AB_CDEF, w: UInt64 = 0xFEED_FACE_CAFE_BEEF
        return ProbeScenario(
            architecture: .amd64, leafSizes: leafSizes,
            mappings: [
                Mapping(
                    physicalBase: 0x20_0000, virtualBase: 0x4000_0000, length: 0x20_0000, kind: .readWrite,
                    userAccessible: true),
                Mapping(
                    physicalBase: 0x20_0000, virtualBase: 0x4020_0000, length: 0x1000, kind: .readOnly,
                    userAccessible: true),  // a read-only user alias
                Mapping(physicalBase: 0x40_0000, virtualBase: 0x4040_0000, length: 0x1000, kind: .readWrite),
                Mapping(physicalBase: 0x40_1000, virtualBase: 0x4040_1000, length: 0x1000, kind: .readOnly),
                Mapping(
                    physicalBase: 0x40_2000, virtualBase: 0x4040_2000, length: 0x1000, kind: .readExecute,
                    userAccessible: true),
                Mapping(
                    physicalBase: 0x40_3000, virtualBase: 0x4040_3000, length: 0x1000, kind: .readWrite,
                    userAccessible: true),  // NX
                Mapping(physicalBase: 0x40_4000, virtualBase: 0x4040_4000, length: 0x1000, kind: .readExecute),
                Mapping(
                    physicalBase: 0x60_0000, virtualBase: 0x6000_0000, length: 0x20_0000,
                    kind: .copyOnWrite(executable: false), userAccessible: true),
                // the frame
                Mapping(physicalBase: 0x60_0000, virtualBase: 0x6100_0000, length: 0x1000, kind: .readOnly),
                Mapping(
                    physicalBase: 0x80_0000, virtualBase: 0x6200_0000, length: 0x1000,
                    kind: .copyOnWrite(executable: false)),  // supervisor copy-on-write
                Mapping(
                    physicalBase: 0x81_0000, virtualBase: 0x7000_0000, length: 0x2000, kind: .readWrite,
                    userAccessible: true),  // U/S cleared in its PD entry below
                Mapping(
                    physicalBase: 0x82_0000, virtualBase: 0x7F80_0000_0000, length: 0x1000, kind: .readWrite,
                    userAccessible: true),  // U/S cleared in its PML4 entry (index 255) below
            ],
            patterned: [
                (0x20_0000, 0x1000), (0x40_0000, 0x2000), (0x60_0000, 0x2000), (0x80_0000, 0x1000),
                (0x81_0000, 0x2000), (0x82_0000, 0x1000),
            ],
            returns: [0x40_2000, 0x40_3000, 0x40_4000],
            tableEdits: [
                .clearUserAccess(va: 0x7000_0000, level: 1), .clearUserAccess(va: 0x7F80_0000_0000, level: 3),
            ],
            cases: [
                ProbeCase(.read(0x4000_0000, 8).inUserMode, .ok(pattern(0x20_0000, 8))),
                ProbeCase(.write(0x4000_0008, 8, v).inUserMode, .ok()),
                ProbeCase(.read(0x4020_0008, 8).inUserMode, .ok(v)),  // the read-only user alias sees it
                ProbeCase(.read(0x4000_0008, 8), .ok(v)),  // ring 0 reads user pages (no SMAP)
                ProbeCase(.write(0x4020_0010, 4, 1).inUserMode, .pageFault(error: 0x7)),  // P W U: read-only
                ProbeCase(.read(0x4040_0000, 8).inUserMode, .pageFault(error: 0x5)),  // P U: supervisor
                ProbeCase(.write(0x4040_0000, 8, 1).inUserMode, .pageFault(error: 0x7)),
                ProbeCase(.write(0x4040_0000, 8, w), .ok()),  // the same page from ring 0
                ProbeCase(.read(0x4040_1000, 4).inUserMode, .pageFault(error: 0x5)),  // supervisor read-only
                ProbeCase(.write(0x4040_1000, 4, 1).inUserMode, .pageFault(error: 0x7)),
                ProbeCase(.execute(0x4040_2000).inUserMode, .ok()),  // user, executable
                ProbeCase(.execute(0x4040_3000).inUserMode, .pageFault(error: 0x15)),  // P U I/D: user NX
                ProbeCase(.execute(0x4040_4000).inUserMode, .pageFault(error: 0x15)),  // supervisor, executable
                ProbeCase(.execute(0x4040_4000), .ok()),
                ProbeCase(.write(0x6000_0010, 8, w).inUserMode, .ok()),  // user copy-on-write: the host copies
                ProbeCase(.read(0x6000_0010, 8).inUserMode, .ok(w)),
                ProbeCase(.read(0x6000_0018, 8).inUserMode, .ok(pattern(0x60_0018, 8))),  // the copy has the rest
                ProbeCase(.read(0x6100_0010, 8), .ok(pattern(0x60_0010, 8))),  // the original frame is unchanged
                ProbeCase(.read(0x6000_1010, 8).inUserMode, .ok(pattern(0x60_1010, 8))),  // still copy-on-write
                ProbeCase(.write(0x6200_0000, 8, 1).inUserMode, .pageFault(error: 0x7)),  // the host refuses
                ProbeCase(.write(0x6200_0000, 8, v), .ok()),  // from ring 0 it copies
                ProbeCase(.read(0x7100_0000, 8).inUserMode, .pageFault(error: 0x4)),  // U: not present
                ProbeCase(.write(0x7100_0000, 4, 1).inUserMode, .pageFault(error: 0x6)),
                ProbeCase(.execute(0x7100_0000).inUserMode, .pageFault(error: 0x14)),
                ProbeCase(.read(0x7000_0000, 8).inUserMode, .pageFault(error: 0x5)),  // user leaf, PD entry U/S=0
                ProbeCase(.write(0x7000_1008, 8, 1).inUserMode, .pageFault(error: 0x7)),
                ProbeCase(.read(0x7000_0000, 8), .ok(pattern(0x81_0000, 8))),
                ProbeCase(.read(0x7F80_0000_0000, 8).inUserMode, .pageFault(error: 0x5)),  // PML4 entry U/S=0
                ProbeCase(.read(0x7F80_0000_0000, 8), .ok(pattern(0x82_0000, 8))),
                ProbeCase(.read(0x10_0000, 8).inUserMode, .ok(image)),  // the runtime's code is a user page ...
                ProbeCase(.read(0x2000, 4).inUserMode, .pageFault(error: 0x5)),  // ... its boot information is not
                ProbeCase(.invalidate(0x4000_0000).inUserMode, .generalProtection(cr2: 0x2000)),  // privileged
                ProbeCase(.read(0x4000_0000, 2).inUserMode, .ok(pattern(0x20_0000, 2))),
                ProbeCase(Probe(.read, 0x4000_0000, size: 3, userMode: true), .invalid),
            ])
    }

    /// i686 at CPL 3 under QEMU, 4 KiB leaves or (`large`) 4 MiB ones for the 4 MiB-aligned user ranges:
    /// the same rules without NX (no I/D bit in the error code: 32-bit paging), 8-byte accesses as two
    /// 4-byte ones (a second half on a supervisor page faults alone), U/S cleared in a PD entry.
    static func i686UserMode(large: Bool) throws -> ProbeScenario {
        let image = try leadingBytes("probe32", 4)
        let v: UInt64 = 0x0123_4567_89AB_CDEF, w: UInt64 = 0xFEED_FACE_CAFE_BEEF
        return ProbeScenario(
            architecture: .i686, memorySize: 32 << 20, leafSizes: large ? [.size4M] : [],
            mappings: [
                Mapping(
                    physicalBase: 0x40_0000, virtualBase: 0xC000_0000, length: 4 << 20, kind: .readWrite,
                    userAccessible: true),
                Mapping(
                    physicalBase: 0x40_0000, virtualBase: 0xC080_0000, length: 0x1000, kind: .readOnly,
                    userAccessible: true),
                Mapping(physicalBase: 0x80_0000, virtualBase: 0x4000_0000, length: 0x1000, kind: .readWrite),
                Mapping(physicalBase: 0x80_1000, virtualBase: 0x4000_1000, length: 0x1000, kind: .readOnly),
                Mapping(
                    physicalBase: 0x80_2000, virtualBase: 0x4000_2000, length: 0x1000, kind: .readExecute,
                    userAccessible: true),
                Mapping(physicalBase: 0x80_3000, virtualBase: 0x4000_3000, length: 0x1000, kind: .readExecute),
                Mapping(
                    physicalBase: 0xC0_0000, virtualBase: 0x5000_0000, length: 4 << 20,
                    kind: .copyOnWrite(executable: false), userAccessible: true),
                Mapping(physicalBase: 0xC0_0000, virtualBase: 0x6000_0000, length: 0x1000, kind: .readOnly),
                Mapping(
                    physicalBase: 0x100_0000, virtualBase: 0x6100_0000, length: 0x1000,
                    kind: .copyOnWrite(executable: false)),
                Mapping(
                    physicalBase: 0x101_0000, virtualBase: 0x7000_0000, length: 0x2000, kind: .readWrite,
                    userAccessible: true),  // U/S cleared in its PD entry below
            ],
            patterned: [
                (0x40_0000, 0x1000), (0x80_0000, 0x4000), (0xC0_0000, 0x2000), (0x100_0000, 0x1000),
                (0x101_0000, 0x2000),
            ],
            returns: [0x80_2000, 0x80_3000],
            tableEdits: [.clearUserAccess(va: 0x7000_0000, level: 1)],
            cases: [
                ProbeCase(.read(0xC000_0000, 8).inUserMode, .ok(pattern(0x40_0000, 8))),
                ProbeCase(.write(0xC000_0008, 8, v).inUserMode, .ok()),
                ProbeCase(.read(0xC080_0008, 8).inUserMode, .ok(v)),
                ProbeCase(.read(0xC000_0008, 4), .ok(v & 0xFFFF_FFFF)),
                ProbeCase(.write(0xC080_0010, 4, 1).inUserMode, .pageFault(error: 0x7)),
                ProbeCase(.read(0x4000_0000, 4).inUserMode, .pageFault(error: 0x5)),
                ProbeCase(.write(0x4000_0000, 4, 1).inUserMode, .pageFault(error: 0x7)),
                ProbeCase(.read(0x4000_1000, 4).inUserMode, .pageFault(error: 0x5)),
                ProbeCase(.write(0x4000_1000, 2, 1).inUserMode, .pageFault(error: 0x7)),
                ProbeCase(.execute(0x4000_2000).inUserMode, .ok()),
                ProbeCase(.execute(0x4000_3000).inUserMode, .pageFault(error: 0x5)),  // no I/D without NX
                ProbeCase(.execute(0x4000_3000), .ok()),
                // Two 4-byte reads: the user page's last dword, then the supervisor page: slot + 2 faults.
                ProbeCase(
                    .read(0x4000_2FFC, 8).inUserMode, .pageFault(error: 0x5, cr2: 0x4000_3000, rip: 0x10_0042)),
                ProbeCase(.write(0x5000_0010, 8, w).inUserMode, .ok()),  // user copy-on-write: the host copies
                ProbeCase(.read(0x5000_0010, 8).inUserMode, .ok(w)),
                ProbeCase(.read(0x6000_0010, 8), .ok(pattern(0xC0_0010, 8))),
                ProbeCase(.read(0x5000_1010, 8).inUserMode, .ok(pattern(0xC0_1010, 8))),
                ProbeCase(.write(0x6100_0000, 4, 1).inUserMode, .pageFault(error: 0x7)),  // the host refuses
                ProbeCase(.write(0x6100_0000, 4, 5), .ok()),  // from ring 0 it copies
                ProbeCase(.read(0x7100_0000, 4).inUserMode, .pageFault(error: 0x4)),
                ProbeCase(.write(0x7100_0000, 4, 1).inUserMode, .pageFault(error: 0x6)),
                ProbeCase(.execute(0x7100_0000).inUserMode, .pageFault(error: 0x4)),
                ProbeCase(.read(0x7000_0000, 4).inUserMode, .pageFault(error: 0x5)),  // PD entry U/S=0
                ProbeCase(.write(0x7000_1000, 4, 1).inUserMode, .pageFault(error: 0x7)),
                ProbeCase(.read(0x7000_0000, 4), .ok(pattern(0x101_0000, 4))),
                ProbeCase(.read(0x10_0000, 4).inUserMode, .ok(image)),
                ProbeCase(.read(0x2000, 4).inUserMode, .pageFault(error: 0x5)),
                ProbeCase(.invalidate(0xC000_0000).inUserMode, .generalProtection(cr2: 0x2000)),
                ProbeCase(.read(0xC000_0000, 2).inUserMode, .ok(pattern(0x40_0000, 2))),
            ])
    }

    /// amd64 at CPL 3 over 1 GiB leaves under QEMU: the same rules for user, supervisor, read-only, NX,
    /// executable and copy-on-write leaves of 1 GiB (the host splits one for a user write), and U/S cleared
    /// in the PML4 entry above a user 1 GiB leaf (its only table entry).
    static func amd64UserModeHuge() -> ProbeScenario {
        let v: UInt64 = 0x0123_4567_89AB_CDEF, w: UInt64 = 0xFEED_FACE_CAFE_BEEF
        func gigabyte(at va: UInt64, _ kind: MappingKind, user: Bool) -> Mapping {
            Mapping(physicalBase: 0, virtualBase: va, length: 1 << 30, kind: kind, userAccessible: user)
        }
        return ProbeScenario(
            architecture: .amd64, memorySize: 32 << 20, leafSizes: [.size2M, .size1G],
            mappings: [
                gigabyte(at: 0x4000_0000, .readWrite, user: true),
                gigabyte(at: 0x8000_0000, .readWrite, user: false),
                gigabyte(at: 0xC000_0000, .readOnly, user: true),
                gigabyte(at: 0x1_0000_0000, .readExecute, user: true),
                gigabyte(at: 0x1_4000_0000, .readExecute, user: false),
                gigabyte(at: 0x1_8000_0000, .copyOnWrite(executable: false), user: true),
                gigabyte(at: 0x80_0000_0000, .readWrite, user: true),  // PML4 entry 1, U/S cleared below
            ],
            patterned: [(0x40_0000, 0x2000), (0x50_0000, 0x2000)],
            returns: [0x30_0000],
            tableEdits: [.clearUserAccess(va: 0x80_0000_0000, level: 3)],
            cases: [
                ProbeCase(.read(0x4040_0000, 8).inUserMode, .ok(pattern(0x40_0000, 8))),
                ProbeCase(.write(0x4040_0008, 8, v).inUserMode, .ok()),
                ProbeCase(.read(0xC040_0008, 8).inUserMode, .ok(v)),
                ProbeCase(.write(0xC040_0010, 4, 1).inUserMode, .pageFault(error: 0x7)),
                ProbeCase(.read(0x8040_0000, 8).inUserMode, .pageFault(error: 0x5)),
                ProbeCase(.write(0x8040_0000, 8, 1).inUserMode, .pageFault(error: 0x7)),
                ProbeCase(.read(0x8040_0008, 8), .ok(v)),
                ProbeCase(.execute(0x1_0030_0000).inUserMode, .ok()),
                ProbeCase(.execute(0xC030_0000).inUserMode, .pageFault(error: 0x15)),  // user NX
                ProbeCase(.execute(0x1_4030_0000).inUserMode, .pageFault(error: 0x15)),  // supervisor
                ProbeCase(.execute(0x1_4030_0000), .ok()),
                ProbeCase(.write(0x1_8050_0010, 8, w).inUserMode, .ok()),  // copy-on-write inside a 1 GiB leaf
                ProbeCase(.read(0x1_8050_0010, 8).inUserMode, .ok(w)),
                ProbeCase(.read(0x8050_0010, 8), .ok(pattern(0x50_0010, 8))),  // the original frame
                ProbeCase(.read(0x1_8050_1010, 8).inUserMode, .ok(pattern(0x50_1010, 8))),  // the neighbour
                ProbeCase(.read(0x80_0040_0008, 8).inUserMode, .pageFault(error: 0x5)),  // PML4 entry U/S=0
                ProbeCase(.read(0x80_0040_0008, 8), .ok(v)),
                ProbeCase(.read(0x7F_0000_0000, 8).inUserMode, .pageFault(error: 0x4)),
            ])
    }
}
