import Foundation
@_spi(Testing) import MicroVM
import PageTables
import PageTablesTestSupport
import Testing

/// A directory for scratch files: tmpfs where the machine has one (fuzzing writes thousands of files).
let scratchDirectory: String = {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory), isDirectory.boolValue {
        return "/dev/shm"
    }
    return NSTemporaryDirectory()
}()

/// Writes `bytes` to `path`, leaving 4 KiB blocks of zeros as holes (snapshot images are mostly zeros).
/// Only the blocks in `blocks` are looked at, when given (the rest are known to be zero).
func writeSparse(_ bytes: [UInt8], to path: String, blocks: Set<Int>? = nil) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    precondition(fd >= 0)
    defer { close(fd) }
    ftruncate(fd, off_t(bytes.count))
    bytes.withUnsafeBytes { buffer in
        for block in blocks.map({ $0.sorted() }) ?? Array(0..<((buffer.count + 4095) / 4096)) {
            let start = block * 4096
            guard start < buffer.count else { continue }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[start..<min(start + 4096, buffer.count)])
            var any: UInt8 = 0
            for byte in chunk { any |= byte }
            if any != 0 { _ = pwrite(fd, chunk.baseAddress!, chunk.count, off_t(start)) }
        }
    }
}

@Suite("snapshot files: every bad file is refused with one line", .enabled(if: kvmUsable, kvmReason))
struct SnapshotFileTests {
    /// A small snapshot file of counter64 at its snapshot request (2 MiB of RAM).
    static let valid: [UInt8] = {
        var config = MachineConfiguration(architecture: .amd64, image: try! guest("counter64"))
        config.memorySize = 2 << 20
        let machine = try! Machine(configuration: config)
        precondition(try! machine.run() == .snapshotRequested)
        let path = "\(scratchDirectory)/microvm-tests-\(getpid())-valid.snap"
        try! machine.snapshot().write(to: path)
        defer { unlink(path) }
        return [UInt8](FileManager.default.contents(atPath: path)!)
    }()

    /// The blocks of the valid file that hold anything.
    static let validBlocks: Set<Int> = Set(
        (0..<(valid.count / 4096)).filter { block in valid[(block * 4096)..<(block * 4096 + 4096)].contains { $0 != 0 } })

    func load(_ bytes: [UInt8], changed: Set<Int>? = nil) -> Result<Snapshot, SnapshotError> {
        let path = "\(scratchDirectory)/microvm-tests-\(getpid())-\(UUID().uuidString).snap"
        writeSparse(bytes, to: path, blocks: changed.map { $0.union(Self.validBlocks) })
        defer { unlink(path) }
        return Result { () throws(SnapshotError) in try Snapshot(contentsOf: path) }
    }

    func problem(_ bytes: [UInt8]) -> String? {
        guard case .failure(.invalidFile(_, let problem)) = load(bytes) else { return nil }
        return problem
    }

    @Test("the valid file loads and restores")
    func valid() throws {
        let snapshot = try load(Self.valid).get()
        var settings = MachineConfiguration(architecture: .amd64, image: [])
        settings.console = .capture
        let machine = try Machine(restoring: snapshot, configuration: settings)
        #expect(try machine.run() == .halted)
        #expect(machine.consoleOutput == Array("counter = 42, scratch = 0\n".utf8))
    }

    @Test("each kind of bad file gets its own line")
    func badFiles() throws {
        var file = Self.valid
        #expect(problem([]) == "is truncated: 0 bytes, shorter than its 4096-byte header")
        #expect(problem(Array(file.prefix(5000))) == "is truncated: 5000 bytes, its state section ends at 9600")
        #expect(problem(Array(file.prefix(10000))) == "is truncated: 10000 bytes, its memory image ends at \(UInt64(12288) + (2 << 20))")
        file[0] = UInt8(ascii: "X")
        #expect(problem(file) == "is not a microvm snapshot (its magic number is wrong)")
        file = Self.valid
        file[8] = 9
        #expect(problem(file) == "has format version 9; this microvm reads version 1")
        file = Self.valid
        file[12] = 1
        #expect(problem(file) == "is corrupt: its header checksum does not match")
        #expect(problem(SnapshotFileTesting.resealed(file)) == "is corrupt: the header names i686 but the vCPU is in long mode")
        file[12] = 7
        #expect(problem(SnapshotFileTesting.resealed(file)) == "names an unknown architecture (7)")
        file = Self.valid
        file[4096 + 40] ^= 0xFF
        #expect(problem(file) == "is corrupt: its state checksum does not match")
        file = Self.valid
        file[file.count - 2 << 20 + 0x100000] ^= 0x01  // the first byte of the guest's image
        #expect(problem(file) == "is corrupt: its memory image checksum does not match")
        // A file for the wrong architecture, asked for explicitly.
        let path = "\(scratchDirectory)/microvm-tests-\(getpid())-arch.snap"
        writeSparse(Self.valid, to: path)
        defer { unlink(path) }
        #expect(throws: SnapshotError.invalidFile(path: path, problem: "holds an amd64 machine, not i686")) {
            try Snapshot(contentsOf: path, architecture: .i686)
        }
    }

    /// Where the payload of state record `tag` starts in `file` (the records follow the header).
    static func payloadOffset(of tag: UInt32, in file: [UInt8]) -> Int? {
        func u32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(file[at + $1]) << (8 * $1) } }
        let end = 4096 + (0..<8).reduce(0) { $0 | Int(file[40 + $1]) << (8 * $1) }
        var at = 4096
        while at + 8 <= end {
            if u32(at) == Int(tag) { return at + 8 }
            at += 8 + (u32(at + 4) + 7) / 8 * 8
        }
        return nil
    }

    static func put(_ value: UInt64, at offset: Int, in file: inout [UInt8]) {
        for index in 0..<8 { file[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
    }

    // Found by scripts/fuzz.sh --class snapshot (seeds 398, 1095): `imageOffset + memorySize` trapped.
    @Test("an image offset so large that the image would end past 2^64 is refused, not added up")
    func hugeImageOffset() {
        for offset: UInt64 in [0xFFFF_FFFF_FFFF_F000, 0xFFFF_FFFF_FFF0_0000, (UInt64.max - (2 << 20) + 1) & ~0xFFF] {
            var file = Self.valid
            Self.put(offset, at: 24, in: &file)
            #expect(problem(SnapshotFileTesting.resealed(file)) == "is corrupt: its sections overlap or are misplaced")
        }
    }

    // Found by scripts/fuzz.sh --class snapshot: a resealed file whose special registers KVM refuses ended
    // with a bare "KVM_SET_SREGS failed" and status 3, as if the host's KVM were at fault.
    @Test("special registers KVM refuses (CR0.PG without PE, a reserved CR4 bit): the snapshot's state is refused")
    func stateRefused() throws {
        // kvm_sregs: 8 segments of 24 bytes, GDT and IDT of 16, then CR0 at 224 and CR4 at 248.
        for (offset, value): (Int, UInt64) in [(224, 0x8000_0000), (248, 1 << 63)] {
            var file = Self.valid
            let special = try #require(Self.payloadOffset(of: 3, in: file))
            Self.put(value, at: special + offset, in: &file)
            let snapshot = try load(SnapshotFileTesting.resealed(file)).get()
            do {
                _ = try Machine(restoring: snapshot)
                Issue.record("special registers +\(offset) = \(String(value, radix: 16)): restored")
            } catch .stateRefused(let error) {
                #expect(error.errno == EINVAL)
                let line = SnapshotError.stateRefused(error).description
                #expect(line.hasPrefix("KVM refused the snapshot's vCPU state (KVM_SET_SREGS failed: Invalid argument"))
                #expect(!line.contains("\n"))
            } catch {
                Issue.record("special registers +\(offset) = \(String(value, radix: 16)): \(error)")
            }
        }
    }

    // Found by scripts/fuzz.sh --class snapshot (seeds 468, 1281): describing the triple fault walked the
    // guest's tables from a CR3 outside RAM and trapped ("entry outside guest memory").
    @Test("a vCPU whose CR3 lies outside RAM ends with a one-line fault; the tables in CR3 are unreadable, not read")
    func rootOutsideRAM() throws {
        for cr3: UInt64 in [2 << 20, (2 << 20) + 0x1000, 0x4000_0000] {
            var file = Self.valid
            let special = try #require(Self.payloadOffset(of: 3, in: file))
            Self.put(cr3, at: special + 240, in: &file)
            let snapshot = try load(SnapshotFileTesting.resealed(file)).get()
            var settings = MachineConfiguration(architecture: .amd64, image: [])
            settings.console = .capture(limit: 4096)
            settings.timeout = .seconds(5)
            let machine = try Machine(restoring: snapshot, configuration: settings)
            #expect(machine.dumpTables().contains("references a table outside table memory"))
            do {
                let outcome = try machine.run()
                Issue.record("CR3 \(String(cr3, radix: 16)): the run ended \(outcome)")
            } catch .fault(let fault) {
                #expect(fault.kind == .tripleFault)
                #expect(!fault.description.contains("\n"))
                #expect(fault.description.contains("tables unreadable"), "\(fault)")
            } catch {
                Issue.record("CR3 \(String(cr3, radix: 16)): \(error)")
            }
            #expect(machine.dumpTables().contains("the walk stopped"))
        }
    }

    @Test("thousands of seeded mutations: each is refused with one line, or loads and runs to one ending")
    func fuzz() throws {
        var random = SeededGenerator(seed: 0x5A7)
        let valid = Self.valid
        let stateLength = Int(valid[40]) | Int(valid[41]) << 8
        var refused = 0, loaded = 0, ran = 0
        var problems: [String: Int] = [:]
        for round in 0..<3000 {
            var file = valid
            var changed: Set<Int> = [0, 1, 2]  // the header and the state
            switch round % 6 {
            case 0:  // a few random bytes anywhere in the header or state
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    file[Int.random(in: 0..<(4096 + stateLength), using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            case 1:  // truncated or extended
                let length = Int.random(in: 0..<(valid.count + 8192), using: &random)
                file = length < valid.count ? Array(file.prefix(length)) : file + [UInt8](repeating: 0xAB, count: length - valid.count)
                if length > valid.count { changed.formUnion((valid.count / 4096)...((length + 4095) / 4096)) }
            case 2, 3:  // state bytes changed, checksums repaired: the decoder must judge
                for _ in 0..<Int.random(in: 1...6, using: &random) {
                    let index = 4096 + Int.random(in: 0..<stateLength, using: &random)
                    file[index] = Bool.random(using: &random) ? UInt8.random(in: 0...255, using: &random) : file[index] ^ (1 << UInt8.random(in: 0..<8, using: &random))
                }
                file = SnapshotFileTesting.resealed(file)
            case 4:  // header fields changed, checksums repaired
                let field = [12, 16, 24, 32, 40].randomElement(using: &random)!
                let value: UInt64 = [0, 1, 4096, 0xFFF, 1 << 40, UInt64.max, UInt64.random(in: 0...UInt64.max, using: &random)]
                    .randomElement(using: &random)!
                for index in 0..<(field == 12 ? 4 : 8) { file[field + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
                file = SnapshotFileTesting.resealed(file)
            default:  // the image changed, checksums repaired: a different guest, which must still be safe to run
                for _ in 0..<Int.random(in: 1...16, using: &random) {
                    let index = file.count - (2 << 20) + Int.random(in: 0..<(2 << 20), using: &random)
                    file[index] = UInt8.random(in: 0...255, using: &random)
                    changed.insert(index / 4096)
                }
                file = SnapshotFileTesting.resealed(file)
            }
            switch load(file, changed: changed) {
            case .failure(let error):
                refused += 1
                #expect(!error.description.contains("\n"), "seed round \(round): \(error)")
                if case .invalidFile(_, let problem) = error {
                    problems[String(problem.prefix(while: { $0 != ":" })), default: 0] += 1
                } else {
                    Issue.record("round \(round): not an invalid-file error: \(error)")
                }
            case .success(let snapshot):
                loaded += 1
                guard ran < 150 else { continue }
                ran += 1
                var settings = MachineConfiguration(architecture: snapshot.architecture, image: [])
                settings.console = .capture(limit: 4096)
                settings.timeout = .milliseconds(20)
                do {
                    let machine = try Machine(restoring: snapshot, configuration: settings)
                    do {
                        _ = try machine.run()
                    } catch {
                        #expect(!error.description.contains("\n"), "round \(round): \(error)")
                    }
                } catch {
                    #expect(!error.description.contains("\n"), "round \(round): \(error)")
                }
            }
        }
        #expect(refused + loaded == 3000)
        #expect(refused > 1000 && loaded > 100, "refused \(refused), loaded \(loaded): \(problems)")
    }
}
