import MicroVM
import PageTables
import PageTablesTestSupport
import Testing

/// The ELF loader against thousands of seeded mutants of valid ELF files (``ELFMutator``): every mutant is
/// either refused with one line, or accepted and then either refused by the machine's layout with one line
/// or built into a ``BootImage`` whose tables obey W^X for every segment. A failure prints the seed and
/// the mutations; `ELFFuzz.mutant(seed:)` rebuilds that mutant exactly.
enum ELFFuzz {
    /// The files mutated: the committed guests and the builder's two-segment file, each with its architecture.
    static let bases: [(name: String, bytes: [UInt8], architecture: Architecture)] = {
        var bases: [(String, [UInt8], Architecture)] = [
            ("builder64", ELFBuilder().bytes, .amd64), ("builder32", ELFBuilder.i686.bytes, .i686),
        ]
        for name in ["hello64", "hello32"] {
            if let bytes = try? elfGuest(name) { bases.append((name, bytes, name.hasSuffix("32") ? .i686 : .amd64)) }
        }
        return bases
    }()

    struct Mutant {
        var seed: UInt64
        var base: String
        var bytes: [UInt8]
        var architecture: Architecture
        var notes: [String]
        var memorySize: UInt64
        var entryPoint: UInt64?
        var extraMappings: [Mapping]
        var label: String { "seed \(seed) (\(base), \(architecture)): \(notes.joined(separator: "; "))" }
    }

    /// The mutant for `seed`: a pure function of it.
    static func mutant(seed: UInt64) -> Mutant {
        var rng = SeededGenerator(seed: seed &* 0x9E37_79B9 &+ 0xE1F)
        let base = bases[Int(seed % UInt64(bases.count))]
        let mutator = ELFMutator(wide: base.architecture == .amd64)
        let (bytes, notes) = mutator.mutate(base.bytes, rng: &rng)
        var architecture = base.architecture
        if Int.random(in: 0..<20, using: &rng) == 0 { architecture = architecture == .amd64 ? .i686 : .amd64 }
        let memorySize = [UInt64(1) << 20, 4 << 20, 16 << 20, 16 << 20, 64 << 20].randomElement(using: &rng)!
        var entryPoint: UInt64? = nil
        if Int.random(in: 0..<10, using: &rng) == 0 {
            entryPoint = [
                0xFFFF_FFFF_8000_0010, 0xC000_0010, 0x10_0000, UInt64.random(in: 0...UInt64.max, using: &rng),
            ]
            .randomElement(using: &rng)!
        }
        var extraMappings: [Mapping] = []
        if Int.random(in: 0..<8, using: &rng) == 0 {
            let physical = [UInt64(0x10_0000), 0x10_1000, 0x10_2000, 0x20_0000].randomElement(using: &rng)!
            let virtual = [UInt64(0x4000_0000), 0xFFFF_FFFF_8000_0000, 0xC000_0000, physical].randomElement(
                using: &rng)!
            let kind = [MappingKind.readOnly, .readWrite, .readExecute, .copyOnWrite(executable: true)]
                .randomElement(using: &rng)!
            extraMappings = [Mapping(physicalBase: physical, virtualBase: virtual, length: 0x1000, kind: kind)]
        }
        return Mutant(
            seed: seed, base: base.name, bytes: bytes, architecture: architecture, notes: notes, memorySize: memorySize,
            entryPoint: entryPoint, extraMappings: extraMappings)
    }

    /// How one mutant ended.
    enum Ending {
        case refusedByParser(String)
        case refusedByLayout(String)
        case built(BootImage, MachineConfiguration)
    }

    static func run(_ mutant: Mutant) -> Ending {
        let image: ELFImage
        do {
            image = try ELFImage(bytes: mutant.bytes, architecture: mutant.architecture)
        } catch {
            return .refusedByParser(error.description)
        }
        var configuration = MachineConfiguration(elf: image)
        configuration.memorySize = mutant.memorySize
        configuration.entryPoint = mutant.entryPoint
        configuration.extraMappings = mutant.extraMappings
        do {
            try configuration.validateLayout(elf: image.layout)
            let allowed: AllowedLeafSizes = mutant.architecture == .amd64 ? [.size2M] : [.size4M]
            return .built(try BootImage(configuration: configuration, allowedLeafSizes: allowed), configuration)
        } catch {
            return .refusedByLayout(error.description)
        }
    }
}

@Suite("ELF loader fuzz: seeded mutants")
struct ELFFuzzTests {
    static let count: UInt64 = 6000

    @Test("6,000 mutants: one-line refusals or images that obey W^X, never a trap")
    func mutants() throws {
        var parserRefusals: [String: Int] = [:]
        var layoutRefusals: [String: Int] = [:]
        var built = 0
        for seed in 0..<Self.count {
            let mutant = ELFFuzz.mutant(seed: seed)
            switch ELFFuzz.run(mutant) {
            case .refusedByParser(let line):
                #expect(!line.isEmpty && !line.contains("\n"), "\(mutant.label): \(line)")
                parserRefusals[String(line.prefix(while: { $0 != ":" && !$0.isNumber })), default: 0] += 1
            case .refusedByLayout(let line):
                #expect(!line.isEmpty && !line.contains("\n"), "\(mutant.label): \(line)")
                layoutRefusals[String(line.prefix(while: { $0 != ":" && !$0.isNumber })), default: 0] += 1
            case .built(let image, let configuration):
                built += 1
                guard case .elf(let elf) = configuration.imageKind else { continue }
                let violations = try writeXorExecuteViolations(image, segments: elf.layout.segments)
                #expect(violations == [], "\(mutant.label)")
                #expect(image.bootInfo.segments.count == elf.layout.segments.count)
                #expect(image.bootInfo.byteCount <= 4096)
            }
        }
        let refused = parserRefusals.values.reduce(0, +) + layoutRefusals.values.reduce(0, +)
        print(
            "ELF fuzz: \(Self.count) mutants, \(built) built, \(refused) refused; parser: \(parserRefusals.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")); layout: \(layoutRefusals.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
        )
        // The mutations reach both sides: the fuzz is neither all refusals nor all harmless.
        #expect(built > Int(Self.count) / 8)
        #expect(refused > Int(Self.count) / 4)
        #expect(parserRefusals.count >= 10)
    }

    @Test("the mutants are a pure function of the seed")
    func reproducible() {
        for seed: UInt64 in [0, 1, 77, 5999] {
            let a = ELFFuzz.mutant(seed: seed)
            let b = ELFFuzz.mutant(seed: seed)
            #expect(a.bytes == b.bytes && a.notes == b.notes && a.memorySize == b.memorySize)
        }
    }
}

@Suite("ELF loader fuzz: accepted amd64 mutants boot on KVM", .enabled(if: kvmUsable, kvmReason))
struct ELFFuzzBootTests {
    @Test("60 accepted amd64 mutants boot: every ending is a run outcome or one line")
    func boots() throws {
        var booted = 0
        var endings: [String: Int] = [:]
        var seed: UInt64 = 0
        while booted < 60 && seed < ELFFuzzTests.count {
            defer { seed += 1 }
            let mutant = ELFFuzz.mutant(seed: seed)
            guard mutant.architecture == .amd64, case .built(_, var configuration) = ELFFuzz.run(mutant) else {
                continue
            }
            configuration.timeout = .milliseconds(100)
            configuration.console = .capture(limit: 4096)
            booted += 1
            do {
                let machine = try Machine(configuration: configuration)
                let outcome = try machine.run()
                endings["\(outcome)", default: 0] += 1
            } catch {
                let line = String(describing: error)
                #expect(!line.isEmpty && !line.contains("\n"), "\(mutant.label): \(line)")
                endings[String(line.prefix(while: { $0 != ":" })), default: 0] += 1
            }
        }
        print(
            "ELF fuzz boots: \(booted) mutants; \(endings.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
        )
        #expect(booted == 60)
    }
}
