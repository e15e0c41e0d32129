import GDBRemote
import Testing

@Suite("Planted INT3 breakpoints are invisible to reads and survive writes")
struct SoftwareBreakpointTests {
    @Test("insert plants 0xCC and keeps the original; reads hide it; remove restores it")
    func plantAndHide() {
        var memory: [UInt64: UInt8] = [0x1000: 0x90, 0x1001: 0x48, 0x1002: 0xFF]
        var breakpoints = GDBSoftwareBreakpoints()
        breakpoints.insert(at: 0x1001, reading: { memory[$0]! }, writing: { memory[$0] = $1 })
        breakpoints.insert(at: 0x1001, reading: { memory[$0]! }, writing: { memory[$0] = $1 })  // idempotent
        #expect(memory[0x1001] == 0xCC)
        #expect(breakpoints.originals == [0x1001: 0x48])
        #expect(breakpoints.contains(0x1001) && !breakpoints.contains(0x1000))
        let raw = [memory[0x1000]!, memory[0x1001]!, memory[0x1002]!]
        #expect(raw == [0x90, 0xCC, 0xFF])
        #expect(breakpoints.hiding(raw, at: 0x1000) == [0x90, 0x48, 0xFF])
        breakpoints.remove(at: 0x1001) { memory[$0] = $1 }
        #expect(memory[0x1001] == 0x48 && breakpoints.originals.isEmpty)
    }

    @Test("a write over a planted breakpoint changes the original, not the INT3")
    func writeOver() {
        var memory: [UInt64: UInt8] = [0x2000: 0x90, 0x2001: 0x90]
        var breakpoints = GDBSoftwareBreakpoints()
        breakpoints.insert(at: 0x2001, reading: { memory[$0]! }, writing: { memory[$0] = $1 })
        #expect(breakpoints.planting([0xB0, 0x07], at: 0x2000) == [0xB0, 0xCC])
        #expect(breakpoints.originals == [0x2001: 0x07])
        breakpoints.removeAll { memory[$0] = $1 }
        #expect(memory[0x2001] == 0x07)
    }

    @Test("a failed read plants nothing; addresses at the top of the space do not wrap")
    func edges() {
        var breakpoints = GDBSoftwareBreakpoints()
        struct Unmapped: Error {}
        #expect(throws: Unmapped.self) {
            try breakpoints.insert(at: 0x5000, reading: { _ in throw Unmapped() }, writing: { _, _ in })
        }
        #expect(breakpoints.originals.isEmpty)
        var memory: [UInt64: UInt8] = [UInt64.max: 0x90]
        breakpoints.insert(at: UInt64.max, reading: { memory[$0]! }, writing: { memory[$0] = $1 })
        #expect(breakpoints.hiding([0xCC, 0x11], at: UInt64.max) == [0x90, 0x11])
    }
}
