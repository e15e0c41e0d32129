import PageTablesTestSupport

/// Seeded, structure-aware mutations of an ELF file, for the loader fuzz tests: byte flips in the headers,
/// random bytes, truncations, extensions, copies of one program header over another, and field-targeted
/// writes of interesting values into the ELF header and program header fields the loader reads.
struct ELFMutator {
    /// One field: its offset from the start of the ELF header or of a program header, and its width.
    struct Field {
        let name: String
        let offset: Int
        let width: Int
    }

    let wide: Bool
    var headerSize: Int { wide ? 64 : 52 }
    var entrySize: Int { wide ? 56 : 32 }

    var headerFields: [Field] {
        [
            Field(name: "EI_CLASS", offset: 4, width: 1), Field(name: "EI_DATA", offset: 5, width: 1),
            Field(name: "EI_VERSION", offset: 6, width: 1), Field(name: "e_type", offset: 16, width: 2),
            Field(name: "e_machine", offset: 18, width: 2), Field(name: "e_version", offset: 20, width: 4),
        ]
            + (wide
                ? [
                    Field(name: "e_entry", offset: 24, width: 8), Field(name: "e_phoff", offset: 32, width: 8),
                    Field(name: "e_phentsize", offset: 54, width: 2), Field(name: "e_phnum", offset: 56, width: 2),
                ]
                : [
                    Field(name: "e_entry", offset: 24, width: 4), Field(name: "e_phoff", offset: 28, width: 4),
                    Field(name: "e_phentsize", offset: 42, width: 2), Field(name: "e_phnum", offset: 44, width: 2),
                ])
    }

    var programHeaderFields: [Field] {
        wide
            ? [
                Field(name: "p_type", offset: 0, width: 4), Field(name: "p_flags", offset: 4, width: 4),
                Field(name: "p_offset", offset: 8, width: 8), Field(name: "p_vaddr", offset: 16, width: 8),
                Field(name: "p_paddr", offset: 24, width: 8), Field(name: "p_filesz", offset: 32, width: 8),
                Field(name: "p_memsz", offset: 40, width: 8), Field(name: "p_align", offset: 48, width: 8),
            ]
            : [
                Field(name: "p_type", offset: 0, width: 4), Field(name: "p_offset", offset: 4, width: 4),
                Field(name: "p_vaddr", offset: 8, width: 4), Field(name: "p_paddr", offset: 12, width: 4),
                Field(name: "p_filesz", offset: 16, width: 4), Field(name: "p_memsz", offset: 20, width: 4),
                Field(name: "p_flags", offset: 24, width: 4), Field(name: "p_align", offset: 28, width: 4),
            ]
    }

    /// Values that sit on the loader's boundaries.
    static let interesting: [UInt64] = [
        0, 1, 2, 3, 7, 0xFF, 0xFFF, 0x1000, 0x1001, 0x7FFF, 0xFFFF, 0xFFFE, 0x8_0000, 0x10_0000, 0x10_1000,
        0xFF_F000, 0x100_0000, 0x7FFF_FFFF, 0x8000_0000, 0xC000_0000, 0xFFFF_F000, 0xFFFF_FFFF, 0x1_0000_0000,
        0x7FFF_FFFF_F000, 0x8000_0000_0000, 0xFFFF_8000_0000_0000, 0xFFFF_FFFF_8000_0000, 0xFFFF_FFFF_FFFF_F000,
        0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, UInt64.max, UInt64.max - 0xFFF,
    ]

    /// Applies 1-4 seeded mutations to `bytes` (mostly one, so that many mutants get past the first check);
    /// returns the mutant and one note per mutation.
    func mutate(_ bytes: [UInt8], rng: inout SeededGenerator) -> (bytes: [UInt8], notes: [String]) {
        var out = bytes
        var notes: [String] = []
        for _ in 0..<[1, 1, 1, 2, 3, 4].randomElement(using: &rng)! {
            notes.append(mutateOnce(&out, rng: &rng))
        }
        return (out, notes)
    }

    /// Where the program header table is in `bytes` (from its own header fields), clamped to the file.
    func table(_ bytes: [UInt8]) -> (offset: Int, count: Int) {
        guard bytes.count >= headerSize else { return (0, 0) }
        let offset = Int(truncatingIfNeeded: load(bytes, wide ? 32 : 28, wide ? 8 : 4))
        let count = Int(load(bytes, wide ? 56 : 44, 2))
        guard offset >= 0, offset < bytes.count else { return (0, 0) }
        return (offset, min(count, (bytes.count - offset) / entrySize))
    }

    func mutateOnce(_ out: inout [UInt8], rng: inout SeededGenerator) -> String {
        let (tableOffset, tableCount) = table(out)
        let headersEnd = min(out.count, max(headerSize, tableOffset + tableCount * entrySize))
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<20:  // bit flips in the headers
            guard headersEnd > 0 else { return "flip (empty)" }
            let at = Int.random(in: 0..<headersEnd, using: &rng)
            out[at] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
            return "flip a bit of byte \(at)"
        case 20..<25:  // a random byte anywhere
            guard !out.isEmpty else { return "byte (empty)" }
            let at = Int.random(in: 0..<out.count, using: &rng)
            out[at] = UInt8.random(in: 0...255, using: &rng)
            return "set byte \(at)"
        case 25..<33:  // truncation, mostly inside the headers
            let limit = Bool.random(using: &rng) ? min(out.count, headersEnd + 8) : out.count
            let count = Int.random(in: 0...limit, using: &rng)
            out.removeLast(out.count - count)
            return "truncate to \(count)"
        case 33..<36:  // extension
            let count = [1, 7, 64, 4096, Int.random(in: 1...20_000, using: &rng)].randomElement(using: &rng)!
            out += (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            return "extend by \(count)"
        case 36..<40:  // one program header copied over another
            guard tableCount >= 2 else { return "copy header (fewer than 2)" }
            let from = Int.random(in: 0..<tableCount, using: &rng)
            let to = Int.random(in: 0..<tableCount, using: &rng)
            let source = Array(out[(tableOffset + from * entrySize)..<(tableOffset + (from + 1) * entrySize)])
            out.replaceSubrange((tableOffset + to * entrySize)..<(tableOffset + (to + 1) * entrySize), with: source)
            return "copy program header \(from) over \(to)"
        case 40..<60:  // an ELF header field
            let field = headerFields.randomElement(using: &rng)!
            return write(field, base: 0, in: &out, rng: &rng)
        default:  // a program header field
            guard tableCount > 0 else { return "program header field (no table)" }
            let index = Int.random(in: 0..<tableCount, using: &rng)
            let field = programHeaderFields.randomElement(using: &rng)!
            return "program header \(index): "
                + write(field, base: tableOffset + index * entrySize, in: &out, rng: &rng)
        }
    }

    /// Writes a new value into `field` at `base`: an interesting value, a small step from the old one, a
    /// random one, or the value of another field of the same header.
    func write(_ field: Field, base: Int, in out: inout [UInt8], rng: inout SeededGenerator) -> String {
        let at = base + field.offset
        guard at >= 0, at + field.width <= out.count else { return "\(field.name) (cut off)" }
        let old = load(out, at, field.width)
        let value: UInt64
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: value = Self.interesting.randomElement(using: &rng)!
        case 1: value = old &+ UInt64(bitPattern: Int64.random(in: -0x2000...0x2000, using: &rng))
        case 2: value = UInt64.random(in: 0...UInt64.max, using: &rng)
        default:
            let other = (base == 0 ? headerFields : programHeaderFields).randomElement(using: &rng)!
            value = base + other.offset + other.width <= out.count ? load(out, base + other.offset, other.width) : 0
        }
        for i in 0..<field.width { out[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        return "\(field.name) \(hexString(old)) -> \(hexString(load(out, at, field.width)))"
    }

    func load(_ bytes: [UInt8], _ at: Int, _ width: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<width where at + i < bytes.count { value |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
        return value
    }

    func hexString(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
}
