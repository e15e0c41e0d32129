import CBaseline
@preconcurrency import Glibc
import MicroVM
import PageTables

/// Page-table setup and translate, engine vs the plain C loop, side by side.
///
/// Setup: for each size (4 KiB .. 4 GiB, powers of 4), each architecture, each leaf policy (4 KiB only, or
/// the large leaves this machine's KVM can walk: 2 MiB on amd64, 4 MiB on i686) and each backing:
/// - `prefaulted`: one populated `GuestMemory`; before every sample the arenas used are cleared outside the
///   timed region, a fresh `GuestTableOps(arenaIsZero: true)` is built over each, and only `map` is timed;
/// - `fresh`: a new `GuestMemory` (anonymous `mmap`, not populated) per iteration, so the kernel's page
///   faults on first touch are in the timed region, as when a machine boots.
/// The C loop gets the same memory: an identically flagged `mmap` (populated or fresh) per case / iteration.
///
/// Translate: `forEachLeaf` with a trivial body over the same ranges (tables built once, pre-faulted),
/// against a plain C walk of the same leaves; every sample checks its checksum.
///
/// Spaces: `walkSpaces` over three amd64 address spaces with 64 MiB of 4 KiB pages each that share a 64 MiB
/// kernel upper half (one PDPT, linked with `linkShared`), against the C walk of the same leaves (the kernel
/// half once). The engine also builds the result arrays; the C walk only sums.
///
/// Small cases are batched (K iterations over K arenas per sample, time / K) so a sample is >= ~20 us.
enum PageTableBench {
    /// 4 KiB, 16 KiB, ..., 4 GiB.
    static let allSizes: [UInt64] = (0...10).map { UInt64(4096) << (2 * $0) }
    static var sizes: [UInt64] { Harness.onlySize.map { [$0] } ?? allSizes }

    static func selected(_ name: String) -> Bool {
        guard let only = Harness.onlyCase else { return true }
        return name.contains(only)
    }

    static func run(setup: Bool, translate: Bool, spaces: Bool = false) {
        let samples = Harness.runs(21, quick: 5)
        if setup {
            for backing in ["prefaulted", "fresh"] {
                for large in [false, true] {
                    setupCases(AMD64.self, large: large, fresh: backing == "fresh", samples: samples)
                    setupCases(I686.self, large: large, fresh: backing == "fresh", samples: samples)
                }
            }
            for large in [false, true] { productPathCases(AMD64.self, large: large, samples: samples) }
        }
        if translate {
            for large in [false, true] {
                translateCases(AMD64.self, large: large, samples: samples)
                translateCases(I686.self, large: large, samples: samples)
            }
        }
        if spaces { spacesCase(samples: samples) }
    }

    static func allowed<Mode: PagingMode>(_: Mode.Type, large: Bool) -> AllowedLeafSizes {
        guard large else { return .smallPagesOnly }
        return Mode.architecture == .amd64 ? [.size2M] : [.size4M]
    }

    /// Arena pages that certainly hold the tables of one mapping of `length` at 0.
    static func arenaBytes<Mode: PagingMode>(_: Mode.Type, length: UInt64) -> UInt64 {
        let pages: UInt64 =
            Mode.levelCount == 4 ? (length >> 21) + (length >> 30) + (length >> 39) + 5 : (length >> 22) + 3
        return pages << 12
    }

    static func caseName<Mode: PagingMode>(_: Mode.Type, large: Bool, backing: String) -> String {
        let leaves = large ? (Mode.architecture == .amd64 ? "2m" : "4m") : "4k"
        return "\(Mode.architecture)/\(leaves)/\(backing)"
    }

    static func cMap<Mode: PagingMode>(_: Mode.Type) -> (UnsafeMutableRawPointer, UInt64, UInt64, UInt64, UInt64, Int32)
        -> Int
    {
        Mode.architecture == .amd64 ? cb_map_amd64 : cb_map_i686
    }

    // MARK: Setup

    static func setupCases<Mode: PagingMode>(_ mode: Mode.Type, large: Bool, fresh: Bool, samples: Int) {
        let name = caseName(mode, large: large, backing: fresh ? "fresh" : "prefaulted")
        guard selected(name) else { return }
        Harness.progress("pagetable setup \(name)")
        let policy = allowed(mode, large: large)
        for size in sizes {
            let mapping = Mapping.identity(0, length: size, kind: .readWrite)
            let arena = arenaBytes(mode, length: size)
            var swift = SetupRunner<Mode>(arena: arena, mapping: mapping, allowed: policy, fresh: fresh)
            var c = CSetupRunner(arena: arena, mapping: mapping, large: large, fresh: fresh, map: cMap(mode))
            let (batch, swiftTimes, cTimes) = compareBatches(&swift, &c, arena: arena, samples: samples)
            guard swift.lastBytesUsed == c.lastBytesUsed else {
                Harness.fail("\(name) \(size): engine used \(swift.lastBytesUsed) arena bytes, C \(c.lastBytesUsed)")
            }
            let note = "batch=\(batch) tables=\(c.lastBytesUsed / 4096)"
            Harness.emit(
                group: "setup", case: name, impl: "swift", param: String(size), unit: "ns",
                Harness.summarize(swiftTimes), note: note)
            Harness.emit(
                group: "setup", case: name, impl: "c", param: String(size), unit: "ns",
                Harness.summarize(cTimes), note: note)
        }
    }

    /// The same maps through the path `Machine` takes: `makeAddressSpace` -> `any AddressSpace` ->
    /// `AMD64PageTables.map` / `I686PageTables.map` (group `setup-product`), 1 MiB .. 1 GiB, pre-faulted.
    static func productPathCases<Mode: PagingMode>(_ mode: Mode.Type, large: Bool, samples: Int) {
        let name = caseName(mode, large: large, backing: "prefaulted")
        guard selected(name) else { return }
        Harness.progress("pagetable setup \(name) through MicroVM.AddressSpace")
        let policy = allowed(mode, large: large)
        for size in sizes where size >= 1 << 20 && size <= 1 << 30 {
            let mapping = Mapping.identity(0, length: size, kind: .readWrite)
            let arena = arenaBytes(mode, length: size)
            var product = AddressSpaceRunner(
                architecture: Mode.architecture, arena: arena, mapping: mapping, allowed: policy)
            var c = CSetupRunner(arena: arena, mapping: mapping, large: large, fresh: false, map: cMap(mode))
            let (batch, productTimes, cTimes) = compareBatches(&product, &c, arena: arena, samples: samples)
            guard product.lastBytesUsed == c.lastBytesUsed else {
                Harness.fail(
                    "\(name) \(size): AddressSpace used \(product.lastBytesUsed) arena bytes, C \(c.lastBytesUsed)")
            }
            let note = "batch=\(batch) via any AddressSpace"
            Harness.emit(
                group: "setup-product", case: name, impl: "swift", param: String(size), unit: "ns",
                Harness.summarize(productTimes), note: note)
            Harness.emit(
                group: "setup-product", case: name, impl: "c", param: String(size), unit: "ns",
                Harness.summarize(cTimes), note: note)
        }
    }

    /// One side of a setup comparison: maps into `batch` arenas per sample.
    protocol BatchRunner {
        mutating func prepare(batch: Int)
        mutating func sample(batch: Int) -> Double
    }

    /// Times `a` against `b`: one map each to choose the batch (>= 20 us per sample, arenas together
    /// <= 32 MiB, at most 2,000 maps), two warm-up samples, then `samples` pairs whose order alternates so
    /// neither side always runs on the other's leftovers.
    static func compareBatches<A: BatchRunner, B: BatchRunner>(
        _ a: inout A, _ b: inout B, arena: UInt64, samples: Int
    ) -> (batch: Int, a: [Double], b: [Double]) {
        _ = a.sample(batch: 1)
        _ = b.sample(batch: 1)
        let estimate = min(a.sample(batch: 1), b.sample(batch: 1))
        let batch = max(1, min(Int((20_000 / max(estimate, 1)).rounded(.up)), 2000, Int((32 << 20) / arena)))
        a.prepare(batch: batch)
        b.prepare(batch: batch)
        for _ in 0..<2 {
            _ = a.sample(batch: batch)
            _ = b.sample(batch: batch)
        }
        var aTimes: [Double] = [], bTimes: [Double] = []
        for i in 0..<samples {
            if i % 2 == 0 {
                aTimes.append(a.sample(batch: batch))
                bTimes.append(b.sample(batch: batch))
            } else {
                bTimes.append(b.sample(batch: batch))
                aTimes.append(a.sample(batch: batch))
            }
        }
        return (batch, aTimes, bTimes)
    }

    /// `any AddressSpace` (what `Machine` holds) over one populated memory holding `batch` arenas.
    struct AddressSpaceRunner: BatchRunner {
        let architecture: Architecture
        let arena: UInt64
        let mapping: Mapping
        let allowed: AllowedLeafSizes
        var shared: GuestMemory? = nil
        var dirty: [UInt64] = []
        var lastBytesUsed: UInt64 = 0

        init(architecture: Architecture, arena: UInt64, mapping: Mapping, allowed: AllowedLeafSizes) {
            self.architecture = architecture
            self.arena = arena
            self.mapping = mapping
            self.allowed = allowed
            prepare(batch: 1)
        }

        mutating func prepare(batch: Int) {
            do { shared = try GuestMemory(size: arena * UInt64(batch), populate: true) } catch {
                Harness.fail("\(error)")
            }
            dirty = []
        }

        mutating func sample(batch: Int) -> Double {
            let memory = shared!
            for (i, used) in dirty.enumerated() { memory.zero(at: UInt64(i) * arena, count: used) }
            var spaces: [any AddressSpace] = []
            do {
                for i in 0..<batch {
                    spaces.append(
                        try makeAddressSpace(
                            architecture: architecture, memory: memory, arenaBase: UInt64(i) * arena, arenaSize: arena,
                            allowedLeafSizes: allowed))
                }
            } catch {
                Harness.fail("\(error)")
            }
            let mapping = self.mapping
            let start = Harness.now()
            do {
                for space in spaces { try space.map(mapping) }
            } catch {
                Harness.fail("map failed: \(error)")
            }
            let end = Harness.now()
            dirty = spaces.map { $0.tableBytesInUse }
            lastBytesUsed = dirty[batch - 1]
            return Double(end - start) / Double(batch)
        }
    }

    /// The engine side of one setup case.
    struct SetupRunner<Mode: PagingMode>: BatchRunner {
        let arena: UInt64
        let mapping: Mapping
        let allowed: AllowedLeafSizes
        let fresh: Bool
        /// Pre-faulted: one populated memory holding `batch` arenas.
        var shared: GuestMemory? = nil
        var lastBytesUsed: UInt64 = 0
        var dirty: [UInt64] = []  // bytes used per arena by the previous sample

        init(arena: UInt64, mapping: Mapping, allowed: AllowedLeafSizes, fresh: Bool) {
            self.arena = arena
            self.mapping = mapping
            self.allowed = allowed
            self.fresh = fresh
            prepare(batch: 1)
        }

        mutating func prepare(batch: Int) {
            guard !fresh else { return }
            do {
                shared = try GuestMemory(size: arena * UInt64(batch), populate: true)
            } catch {
                Harness.fail("\(error)")
            }
            dirty = []
        }

        /// Times `batch` maps, each into its own zeroed arena; returns ns per map.
        mutating func sample(batch: Int) -> Double {
            var memories: [GuestMemory] = []
            var tables: [PageTable<GuestTableOps<Mode>>] = []
            tables.reserveCapacity(batch)
            do {
                if fresh {
                    memories.reserveCapacity(batch)
                    for _ in 0..<batch {
                        let memory = try GuestMemory(size: arena, populate: false)
                        memories.append(memory)
                        tables.append(
                            PageTable(
                                ops: try GuestTableOps(
                                    memory: memory, arenaBase: 0, arenaSize: arena, arenaIsZero: true),
                                allowedLeafSizes: allowed))
                    }
                } else {
                    let memory = shared!
                    for (i, used) in dirty.enumerated() { memory.zero(at: UInt64(i) * arena, count: used) }
                    for i in 0..<batch {
                        tables.append(
                            PageTable(
                                ops: try GuestTableOps(
                                    memory: memory, arenaBase: UInt64(i) * arena, arenaSize: arena, arenaIsZero: true),
                                allowedLeafSizes: allowed))
                    }
                }
            } catch {
                Harness.fail("\(error)")
            }
            let mapping = self.mapping
            let start = Harness.now()
            do {
                for i in 0..<batch { try tables[i].map(mapping) }
            } catch {
                Harness.fail("map failed: \(error)")
            }
            let end = Harness.now()
            dirty = tables.map { $0.ops.bytesInUse }
            lastBytesUsed = dirty[batch - 1]
            blackHole(tables)
            return Double(end - start) / Double(batch)
        }
    }

    /// The C side of one setup case.
    struct CSetupRunner: BatchRunner {
        let arena: UInt64
        let mapping: Mapping
        let large: Bool
        let fresh: Bool
        let map: (UnsafeMutableRawPointer, UInt64, UInt64, UInt64, UInt64, Int32) -> Int
        var shared: RawMemory? = nil
        var dirty: [Int] = []
        var lastBytesUsed: UInt64 = 0

        init(
            arena: UInt64, mapping: Mapping, large: Bool, fresh: Bool,
            map: @escaping (UnsafeMutableRawPointer, UInt64, UInt64, UInt64, UInt64, Int32) -> Int
        ) {
            self.arena = arena
            self.mapping = mapping
            self.large = large
            self.fresh = fresh
            self.map = map
            prepare(batch: 1)
        }

        mutating func prepare(batch: Int) {
            guard !fresh else { return }
            shared = RawMemory(size: Int(arena) * batch, populate: true)
            dirty = []
        }

        mutating func sample(batch: Int) -> Double {
            var regions: [RawMemory] = []
            var bases: [UnsafeMutableRawPointer] = []
            if fresh {
                for _ in 0..<batch {
                    let region = RawMemory(size: Int(arena), populate: false)
                    regions.append(region)
                    bases.append(region.base)
                }
            } else {
                let memory = shared!
                for (i, used) in dirty.enumerated() { memset(memory.base + i * Int(arena), 0, used) }
                for i in 0..<batch { bases.append(memory.base + i * Int(arena)) }
            }
            var used = [Int](repeating: 0, count: batch)
            let va = mapping.virtualBase, pa = mapping.physicalBase, length = mapping.length
            let flag: Int32 = large ? 1 : 0
            let start = Harness.now()
            for i in 0..<batch { used[i] = map(bases[i], 0, va, pa, length, flag) }
            let end = Harness.now()
            dirty = used
            lastBytesUsed = UInt64(used[batch - 1])
            blackHole(regions)
            return Double(end - start) / Double(batch)
        }
    }

    // MARK: Translate

    static func translateCases<Mode: PagingMode>(_ mode: Mode.Type, large: Bool, samples: Int) {
        let name = caseName(mode, large: large, backing: "prefaulted")
        guard selected(name) else { return }
        Harness.progress("pagetable translate \(name)")
        let policy = allowed(mode, large: large)
        let walk: (UnsafeRawPointer, UInt64, UInt64, UInt64) -> UInt64 =
            Mode.architecture == .amd64 ? cb_walk_amd64 : cb_walk_i686
        for size in sizes {
            let arena = arenaBytes(mode, length: size)
            let memory: GuestMemory
            var tables: PageTable<GuestTableOps<Mode>>
            do {
                memory = try GuestMemory(size: arena, populate: true)
                tables = PageTable(
                    ops: try GuestTableOps(memory: memory, arenaBase: 0, arenaSize: arena, arenaIsZero: true),
                    allowedLeafSizes: policy)
                try tables.map(.identity(0, length: size, kind: .readWrite))
            } catch {
                Harness.fail("\(error)")
            }
            let raw = RawMemory(size: Int(arena), populate: true)
            _ = cMap(mode)(raw.base, 0, 0, 0, size, large ? 1 : 0)
            let table = tables
            // Both walks must see the same leaves. Every sample checks its sum against this, which also keeps
            // the optimiser from dropping the walk whose result nothing else uses.
            var check: UInt64 = 0
            try! table.forEachLeaf(virtualBase: 0, length: size) { check &+= $0.physicalAddress &+ $0.length }
            let cCheck = walk(raw.base, 0, 0, size)
            guard check == cCheck else {
                Harness.fail("translate \(name) \(size): checksums differ (\(check) vs C \(cCheck))")
            }

            func swiftSample(_ batch: Int) -> Double {
                var sum: UInt64 = 0
                let start = Harness.now()
                do {
                    for _ in 0..<batch {
                        try table.forEachLeaf(virtualBase: 0, length: size) { sum &+= $0.physicalAddress &+ $0.length }
                    }
                } catch {
                    Harness.fail("translate failed: \(error)")
                }
                let end = Harness.now()
                guard sum == check &* UInt64(batch) else { Harness.fail("translate \(name): wrong sum") }
                return Double(end - start) / Double(batch)
            }
            func cSample(_ batch: Int) -> Double {
                var sum: UInt64 = 0
                let start = Harness.now()
                for _ in 0..<batch { sum &+= walk(raw.base, 0, 0, size) }
                let end = Harness.now()
                guard sum == check &* UInt64(batch) else { Harness.fail("translate \(name): wrong C sum") }
                return Double(end - start) / Double(batch)
            }

            _ = swiftSample(1)
            _ = cSample(1)
            let estimate = min(swiftSample(1), cSample(1))
            let batch = max(1, min(Int((20_000 / max(estimate, 1)).rounded(.up)), 100_000))
            _ = swiftSample(batch)
            _ = cSample(batch)
            var swiftTimes: [Double] = [], cTimes: [Double] = []
            for i in 0..<samples {
                if i % 2 == 0 {
                    swiftTimes.append(swiftSample(batch))
                    cTimes.append(cSample(batch))
                } else {
                    cTimes.append(cSample(batch))
                    swiftTimes.append(swiftSample(batch))
                }
            }
            blackHole(memory)
            Harness.emit(
                group: "translate", case: name, impl: "swift", param: String(size), unit: "ns",
                Harness.summarize(swiftTimes), note: "batch=\(batch)")
            Harness.emit(
                group: "translate", case: name, impl: "c", param: String(size), unit: "ns",
                Harness.summarize(cTimes), note: "batch=\(batch)")
        }
    }
}

extension PageTableBench {
    // MARK: Spaces

    static func spacesCase(samples: Int) {
        let name = "amd64/3x64m-shared-upper-half"
        guard selected(name) else { return }
        Harness.progress("pagetable spaces \(name)")
        let size: UInt64 = 64 << 20
        let upperHalf: UInt64 = 0xFFFF_8000_0000_0000
        let arena: UInt64 = 1 << 20
        let memory: GuestMemory
        var tables: PageTable<GuestTableOps<AMD64>>
        var roots: [UInt64] = []
        do {
            memory = try GuestMemory(size: arena, populate: true)
            tables = PageTable(
                ops: try GuestTableOps(memory: memory, arenaBase: 0, arenaSize: arena, arenaIsZero: true),
                allowedLeafSizes: .smallPagesOnly)
            let kernel = tables.ops.root
            try tables.map(Mapping(physicalBase: 1 << 32, virtualBase: upperHalf, length: size, kind: .readWrite))
            let kernelHalf = SpaceReference(
                depth: 1, space: kernel, virtualAddress: upperHalf, ownerVirtualAddress: upperHalf, length: 1 << 39,
                tablePhysicalAddress: 0)
            for space in 0..<3 {
                if space > 0 {
                    tables.ops.replaceRoot(with: try tables.ops.allocateTable())
                    try tables.linkShared(kernelHalf, builtRoots: [kernel: kernel])
                }
                roots.append(tables.ops.root)
                try tables.map(
                    Mapping(physicalBase: UInt64(space + 2) << 32, virtualBase: 0, length: size, kind: .readWrite))
            }
        } catch {
            Harness.fail("\(error)")
        }
        // The C walk reads a copy of the same tables (table addresses are offsets in the arena).
        let raw = RawMemory(size: Int(arena), populate: true)
        guard let bytes = memory.read(at: 0, count: Int(arena)) else { Harness.fail("cannot read the arena") }
        bytes.withUnsafeBytes { raw.base.copyMemory(from: $0.baseAddress!, byteCount: Int(arena)) }
        func cWalk(_ root: UInt64, _ linear: UInt64) -> UInt64 {
            cb_walk_amd64(UnsafeRawPointer(raw.base + Int(root)), root, linear, size)
        }
        let table = tables
        let spaceRoots = roots

        /// The C walk's sum, physical address plus length per leaf, over runs of leaves of one size.
        func checksum(_ walk: [SpaceWalk]) -> UInt64 {
            var sum: UInt64 = 0
            for space in walk {
                for case .mapping(let run) in space.items {
                    let size = run.leafSize.byteCount
                    let n = run.length / size
                    sum &+= n &* run.physicalAddress &+ size &* (n &* (n &+ 1) / 2)
                }
            }
            return sum
        }
        let check: UInt64
        do { check = checksum(try table.walkSpaces(roots: spaceRoots)) } catch { Harness.fail("\(error)") }
        let cCheck = spaceRoots.map { cWalk($0, 0) }.reduce(0, &+) &+ cWalk(spaceRoots[0], 1 << 47)
        guard check == cCheck else { Harness.fail("spaces: checksums differ (\(check) vs C \(cCheck))") }

        func swiftSample(_ batch: Int) -> Double {
            var sum: UInt64 = 0
            let start = Harness.now()
            do {
                for _ in 0..<batch { sum &+= checksum(try table.walkSpaces(roots: spaceRoots)) }
            } catch {
                Harness.fail("walkSpaces failed: \(error)")
            }
            let end = Harness.now()
            guard sum == check &* UInt64(batch) else { Harness.fail("spaces: wrong sum") }
            return Double(end - start) / Double(batch)
        }
        func cSample(_ batch: Int) -> Double {
            var sum: UInt64 = 0
            let start = Harness.now()
            for _ in 0..<batch {
                for root in spaceRoots { sum &+= cWalk(root, 0) }
                sum &+= cWalk(spaceRoots[0], 1 << 47)
            }
            let end = Harness.now()
            guard sum == check &* UInt64(batch) else { Harness.fail("spaces: wrong C sum") }
            return Double(end - start) / Double(batch)
        }
        _ = swiftSample(1)
        _ = cSample(1)
        var swiftTimes: [Double] = [], cTimes: [Double] = []
        for i in 0..<samples {
            if i % 2 == 0 {
                swiftTimes.append(swiftSample(1))
                cTimes.append(cSample(1))
            } else {
                cTimes.append(cSample(1))
                swiftTimes.append(swiftSample(1))
            }
        }
        blackHole(memory)
        let note = "3 spaces x 64 MiB + shared 64 MiB upper half, 4 KiB leaves"
        Harness.emit(
            group: "spaces", case: name, impl: "swift", param: "-", unit: "ns", Harness.summarize(swiftTimes),
            note: note)
        Harness.emit(
            group: "spaces", case: name, impl: "c", param: "-", unit: "ns", Harness.summarize(cTimes), note: note)
    }
}

/// Anonymous memory for the C side, mapped with exactly the flags `GuestMemory` uses.
final class RawMemory {
    let base: UnsafeMutableRawPointer
    let size: Int

    init(size: Int, populate: Bool) {
        var flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        if populate { flags |= MAP_POPULATE }
        guard let pointer = mmap(nil, size, PROT_READ | PROT_WRITE, flags, -1, 0), pointer != MAP_FAILED else {
            Harness.fail("mmap \(size) failed")
        }
        base = pointer
        self.size = size
    }

    deinit { munmap(base, size) }
}
