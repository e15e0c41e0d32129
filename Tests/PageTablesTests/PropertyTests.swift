import PageTables
import PageTablesTestSupport
import Testing

/// The reference model: page (linear 4 KiB index of its canonical address) -> frame, kind and U/S.
struct ModelPage: Equatable {
    var frame: UInt64
    var kind: MappingKind
    var user: Bool
}

enum Step: CustomStringConvertible {
    case map(Mapping)
    case unmap(UInt64, UInt64)
    case protect(UInt64, UInt64, MappingKind, Bool)

    var description: String {
        switch self {
        case .map(let m): "map \(m)"
        case .unmap(let va, let len): "unmap va \(hex(va)) len \(hex(len))"
        case .protect(let va, let len, let kind, let user):
            "protect va \(hex(va)) len \(hex(len)) \(kind)\(user ? " user" : "")"
        }
    }
}

/// One test configuration: mode, leaf policy, movability double.
struct Configuration: CustomTestStringConvertible, Sendable {
    enum Double: Sendable { case inPlace, copyOnFirstWrite }
    var architecture: Architecture
    var largeLeaves: Bool
    var double: Double
    var testDescription: String {
        "\(architecture) \(largeLeaves ? "large leaves" : "4 KiB only") \(double == .inPlace ? "in place" : "copy-on-first-write")"
    }
    static let all: [Configuration] = Architecture.allCases.flatMap { arch in
        [false, true].flatMap { large in
            [Double.inPlace, .copyOnFirstWrite].map {
                Configuration(architecture: arch, largeLeaves: large, double: $0)
            }
        }
    }
}

/// The abstraction the property runner needs over both doubles.
protocol PropertyOps: TableOps {
    init()
    var liveTables: Int { get }
    mutating func freezeIfMovable()
    func viewingRoot(_ root: TableAddress) -> Self
}
extension ArrayTableOps: PropertyOps {
    init() { self.init(physicalBase: 0x10_0000) }
    var liveTables: Int { memory.liveTableCount }
    mutating func freezeIfMovable() {}
    func viewingRoot(_ root: TableAddress) -> Self { self }
}
extension CopyOnFirstWriteTableOps: PropertyOps {
    init() { self.init(physicalBase: 0x10_0000) }
    var liveTables: Int { memory.liveTableCount }
    mutating func freezeIfMovable() { freeze() }
    func viewingRoot(_ root: TableAddress) -> Self { viewing(root: root) }
}

@Suite("properties: random map / unmap / protect sequences agree with a reference model")
struct PropertyTests {
    static let sequencesPerConfiguration = 3_000

    @Test(arguments: Configuration.all)
    func randomSequences(_ configuration: Configuration) throws {
        let allowed: AllowedLeafSizes = configuration.largeLeaves ? .all : .smallPagesOnly
        switch (configuration.architecture, configuration.double) {
        case (.amd64, .inPlace): try run(ArrayTableOps<AMD64>.self, allowed, seed: 1)
        case (.amd64, .copyOnFirstWrite): try run(CopyOnFirstWriteTableOps<AMD64>.self, allowed, seed: 2)
        case (.i686, .inPlace): try run(ArrayTableOps<I686>.self, allowed, seed: 3)
        case (.i686, .copyOnFirstWrite): try run(CopyOnFirstWriteTableOps<I686>.self, allowed, seed: 4)
        }
    }

    /// Runs many short sequences in a window of 16 MiB (8 MiB-aligned, so 2 MiB and 4 MiB leaves occur)
    /// placed at the bottom, the top, and on amd64 the upper half and the top of the lower half.
    func run<Ops: PropertyOps>(_: Ops.Type, _ allowed: AllowedLeafSizes, seed: UInt64) throws {
        typealias Mode = Ops.Mode
        let is64 = Mode.architecture == .amd64
        let windows: [UInt64] =
            is64
            ? [0, 0x7FFF_FF00_0000, 0xFFFF_8000_0000_0000, 0xFFFF_FFFF_FF00_0000, 0x3FC0_0000]
            : [0, 0xFF00_0000, 0xBFC0_0000]
        let windowPages: UInt64 = 4096  // 16 MiB
        var rng = SeededGenerator(seed: seed &* 0x1234_5678_9ABC)
        for sequence in 0..<Self.sequencesPerConfiguration {
            let window = windows[Int(rng.next() % UInt64(windows.count))]
            var tables = PageTable(ops: Ops(), allowedLeafSizes: allowed)
            var model: [UInt64: ModelPage] = [:]
            var steps: [Step] = []
            let stepCount = 1 + Int(rng.next() % 8)
            var snapshot: (root: Ops.TableAddress, model: [UInt64: ModelPage])? = nil
            for stepIndex in 0..<stepCount {
                if stepIndex == stepCount / 2 {
                    // Halfway, the movable double freezes what exists: later writes must copy.
                    tables.ops.freezeIfMovable()
                    snapshot = (tables.ops.root, model)
                }
                let step = Self.randomStep(
                    &rng, window: window, windowPages: windowPages, physicalBits: Mode.physicalAddressBits)
                steps.append(step)
                try Self.apply(step, to: &tables, model: &model, executeAlwaysAllowed: !is64)
            }
            let context = Comment(
                rawValue: "sequence \(sequence) seed \(seed):\n" + steps.map { "  \($0)" }.joined(separator: "\n"))
            try Self.check(tables, against: model, window: window, windowPages: windowPages, context)
            if let snapshot, Ops.self is CopyOnFirstWriteTableOps<Mode>.Type {
                // The snapshot's tables were never written: its root still shows the old address space.
                let old = PageTable(ops: tables.ops.viewingRoot(snapshot.root), allowedLeafSizes: allowed)
                try Self.check(old, against: snapshot.model, window: window, windowPages: windowPages, context)
            }
            if Ops.self is ArrayTableOps<Mode>.Type {
                // Unmapping everything gives every table back but the root.
                try tables.unmap(virtualBase: window, length: windowPages << 12)
                #expect(tables.ops.liveTables == 1, context)
            }
        }
    }

    static func randomStep(_ rng: inout SeededGenerator, window: UInt64, windowPages: UInt64, physicalBits: Int) -> Step
    {
        // Starts and lengths: any page, or 2 MiB / 4 MiB aligned, so large leaves and their splits both occur.
        func pick(_ limit: UInt64) -> UInt64 {
            switch rng.next() % 3 {
            case 0: return rng.next() % limit
            case 1: return (rng.next() % (limit / 512)) * 512
            default: return (rng.next() % (limit / 1024)) * 1024
            }
        }
        let startPage = pick(windowPages)
        var pages = pick(windowPages) + 1
        pages = min(pages, windowPages - startPage)
        let va = window + startPage << 12
        let length = pages << 12
        let kinds: [MappingKind] = [
            .readOnly, .readWrite, .readExecute, .readWriteExecute, .copyOnWrite(executable: false),
            .copyOnWrite(executable: true),
        ]
        let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
        let user = rng.next() % 4 == 0
        switch rng.next() % 6 {
        case 0, 1, 2:
            // Frames: 4 MiB-aligned base plus the same page offset as the VA (large leaves possible), or random.
            let frameSpace: UInt64 = physicalBits == 32 ? 0x8000_0000 : 0x10_0000_0000
            var pa = (rng.next() % (frameSpace >> 22)) << 22 + (startPage << 12) % (1 << 22)
            if rng.next() % 3 == 0 { pa = (rng.next() % (frameSpace >> 12)) << 12 }
            return .map(Mapping(physicalBase: pa, virtualBase: va, length: length, kind: kind, userAccessible: user))
        case 3:
            return .unmap(va, length)
        default:
            return .protect(va, length, kind, user)
        }
    }

    static func apply<Ops: TableOps>(
        _ step: Step, to tables: inout PageTable<Ops>, model: inout [UInt64: ModelPage], executeAlwaysAllowed: Bool
    ) throws {
        func normal(_ kind: MappingKind) -> MappingKind {
            guard executeAlwaysAllowed else { return kind }
            switch kind {
            case .basic(let w, _): return .basic(writable: w, executable: true)
            case .copyOnWrite: return .copyOnWrite(executable: true)
            case .unmapped: return .unmapped
            }
        }
        switch step {
        case .map(let m):
            try tables.map(m)
            for i in 0..<(m.length >> 12) {
                model[(m.virtualBase >> 12) &+ i] = ModelPage(
                    frame: m.physicalBase + i << 12, kind: normal(m.kind), user: m.userAccessible)
            }
        case .unmap(let va, let length):
            try tables.unmap(virtualBase: va, length: length)
            for i in 0..<(length >> 12) { model[(va >> 12) &+ i] = nil }
        case .protect(let va, let length, let kind, let user):
            try tables.protect(virtualBase: va, length: length, kind: kind, userAccessible: user)
            for i in 0..<(length >> 12) {
                let page = (va >> 12) &+ i
                if let old = model[page] { model[page] = ModelPage(frame: old.frame, kind: normal(kind), user: user) }
            }
        }
    }

    static func check<Ops: TableOps>(
        _ tables: PageTable<Ops>, against model: [UInt64: ModelPage], window: UInt64, windowPages: UInt64,
        _ context: Comment
    ) throws {
        var seen = 0
        var mismatch: String? = nil
        try tables.forEachLeaf(virtualBase: window, length: windowPages << 12) { leaf in
            guard mismatch == nil else { return }
            for i in 0..<(leaf.length >> 12) {
                let page = (leaf.virtualAddress >> 12) &+ i
                let actual = ModelPage(
                    frame: leaf.physicalAddress + i << 12, kind: leaf.kind, user: leaf.userAccessible)
                if model[page] != actual {
                    mismatch =
                        "page \(hex(page << 12)): tables \(actual), model \(String(describing: model[page]))"
                    return
                }
                seen += 1
            }
        }
        #expect(mismatch == nil, "\(mismatch ?? "")\n\(context.rawValue)")
        #expect(seen == model.count, context)
    }
}
