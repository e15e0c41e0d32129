import Foundation
import MicroVM
import PageTables
import Testing

/// The bytes of `Guests/elf/<name>.elf`.
func elfGuest(_ name: String) throws -> [UInt8] {
    try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(packageRoot)/Guests/elf/\(name).elf")))
}

/// A configuration for a committed ELF guest, capturing the console.
func elfConfiguration(_ name: String, entry: UInt64? = nil) throws -> MachineConfiguration {
    let architecture: Architecture = name.hasSuffix("32") ? .i686 : .amd64
    var configuration = MachineConfiguration(
        elf: try ELFImage(bytes: try elfGuest(name), architecture: architecture))
    configuration.console = .capture
    configuration.timeout = .seconds(5)
    configuration.entryPoint = entry
    return configuration
}

/// Builds ELF files field by field, for tests that need one specific defect.
///
/// By default: an ELF64 amd64 `ET_EXEC` with two segments, text R-X at 0xFFFFFFFF80000000 (physical
/// 0x100000, 0x100 bytes from file offset 0x1000) and data RW- at 0xFFFFFFFF80001000 (physical 0x101000,
/// 0x10 file bytes from offset 0x2000, 0x2000 in memory), entry at the start of text. The file is as long as
/// the furthest segment's file bytes; bytes after the headers are a pattern of their offset.
struct ELFBuilder {
    struct ProgramHeader {
        var type: UInt32 = 1  // PT_LOAD
        var flags: UInt32
        var offset: UInt64
        var virtualAddress: UInt64
        var physicalAddress: UInt64
        var fileSize: UInt64
        var memorySize: UInt64
        var align: UInt64 = 0x1000
    }

    var wide = true
    var fileClass: UInt8? = nil
    var data: UInt8 = 1
    var identVersion: UInt8 = 1
    var type: UInt16 = 2
    var machine: UInt16? = nil
    var version: UInt32 = 1
    var entry: UInt64 = 0xFFFF_FFFF_8000_0000
    var programHeaderOffset: UInt64? = nil
    var programHeaderSize: UInt16? = nil
    var programHeaderCount: UInt16? = nil
    var headers: [ProgramHeader] = [
        ProgramHeader(
            flags: 5, offset: 0x1000, virtualAddress: 0xFFFF_FFFF_8000_0000, physicalAddress: 0x10_0000,
            fileSize: 0x100, memorySize: 0x100),
        ProgramHeader(
            flags: 6, offset: 0x2000, virtualAddress: 0xFFFF_FFFF_8000_1000, physicalAddress: 0x10_1000,
            fileSize: 0x10, memorySize: 0x2000),
    ]
    /// Bytes to append after the furthest segment.
    var trailing = 0

    /// An i686 (ELF32) file with the same shape at 0xC0000000.
    static var i686: ELFBuilder {
        var builder = ELFBuilder()
        builder.wide = false
        builder.entry = 0xC000_0000
        builder.headers[0].virtualAddress = 0xC000_0000
        builder.headers[1].virtualAddress = 0xC000_1000
        return builder
    }

    var bytes: [UInt8] {
        let headerSize = wide ? 64 : 52
        let entrySize = wide ? 56 : 32
        let tableOffset = programHeaderOffset ?? UInt64(headerSize)
        let tableEnd = Int(tableOffset) + headers.count * entrySize
        let segmentEnd = headers.map { Int(truncatingIfNeeded: $0.offset &+ $0.fileSize) }.max() ?? 0
        var out = (0..<max(headerSize, tableEnd, segmentEnd)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        out += [UInt8](repeating: 0xEE, count: trailing)
        func put<T: FixedWidthInteger>(_ value: T, _ at: Int) {
            for i in 0..<(T.bitWidth / 8) { out[at + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
        }
        put(UInt32(0x464C_457F), 0)
        put(fileClass ?? (wide ? 2 : 1), 4)
        put(data, 5)
        put(identVersion, 6)
        for i in 7..<16 { out[i] = 0 }
        put(type, 16)
        put(machine ?? (wide ? 62 : 3), 18)
        put(version, 20)
        if wide {
            put(entry, 24)
            put(tableOffset, 32)
            put(UInt64(0), 40)
            put(UInt32(0), 48)
            put(UInt16(64), 52)
            put(programHeaderSize ?? 56, 54)
            put(programHeaderCount ?? UInt16(headers.count), 56)
            put(UInt16(64), 58)
            put(UInt16(0), 60)
            put(UInt16(0), 62)
        } else {
            put(UInt32(truncatingIfNeeded: entry), 24)
            put(UInt32(truncatingIfNeeded: tableOffset), 28)
            put(UInt32(0), 32)
            put(UInt32(0), 36)
            put(UInt16(52), 40)
            put(programHeaderSize ?? 32, 42)
            put(programHeaderCount ?? UInt16(headers.count), 44)
            put(UInt16(40), 46)
            put(UInt16(0), 48)
            put(UInt16(0), 50)
        }
        for (index, header) in headers.enumerated() {
            let at = Int(tableOffset) + index * entrySize
            put(header.type, at)
            if wide {
                put(header.flags, at + 4)
                put(header.offset, at + 8)
                put(header.virtualAddress, at + 16)
                put(header.physicalAddress, at + 24)
                put(header.fileSize, at + 32)
                put(header.memorySize, at + 40)
                put(header.align, at + 48)
            } else {
                put(UInt32(truncatingIfNeeded: header.offset), at + 4)
                put(UInt32(truncatingIfNeeded: header.virtualAddress), at + 8)
                put(UInt32(truncatingIfNeeded: header.physicalAddress), at + 12)
                put(UInt32(truncatingIfNeeded: header.fileSize), at + 16)
                put(UInt32(truncatingIfNeeded: header.memorySize), at + 20)
                put(header.flags, at + 24)
                put(UInt32(truncatingIfNeeded: header.align), at + 28)
            }
        }
        return out
    }

    var architecture: Architecture { wide ? .amd64 : .i686 }

    /// Parses the built file.
    func parse(as architecture: Architecture? = nil) throws(ELFError) -> ELFImage {
        try ELFImage(bytes: bytes, architecture: architecture ?? self.architecture)
    }
}

/// The ELF error for `bytes`, or `nil` when they parse.
func elfError(_ bytes: [UInt8], _ architecture: Architecture = .amd64) -> ELFError? {
    do {
        _ = try ELFImage(bytes: bytes, architecture: architecture)
        return nil
    } catch {
        return error
    }
}

/// Checks W^X for an ELF image over the whole address space the host built: every present leaf that maps a
/// frame of a segment is writable only if the segment is, and executable only if the segment is (amd64; i686
/// has no NX); the only executable leaves at all are those onto executable segments' frames (apart from the
/// configuration's extra mappings, which the user chose); each segment's virtual pages translate to its
/// frames with exactly its kind. Returns the problems found, one per line.
func writeXorExecuteViolations(_ image: BootImage, segments: [ELFSegment]) throws -> [String] {
    let space = image.addressSpace
    let amd64 = image.configuration.architecture == .amd64
    var problems: [String] = []
    for range in space.virtualSpace {
        try space.forEachLeaf(virtualBase: range.base, length: range.length, maximumTables: 1 << 20) { leaf in
            let first = leaf.physicalAddress
            let last = leaf.physicalAddress + leaf.length - 1
            var onExecutableSegment = false
            for segment in segments {
                let base = segment.pagePhysicalBase
                let end = base + segment.pageLength
                guard first < end && base <= last else { continue }
                if leaf.kind.isWritable && !segment.permissions.contains(.writable) {
                    problems.append(
                        "\(leaf) makes frames of segment \(segment.index) (\(segment.permissions)) writable")
                }
                if amd64 && leaf.kind.isExecutable && !segment.permissions.contains(.executable) {
                    problems.append(
                        "\(leaf) makes frames of segment \(segment.index) (\(segment.permissions)) executable")
                }
                if segment.permissions.contains(.executable) && base <= first && last < end {
                    onExecutableSegment = true
                }
            }
            let extra = image.configuration.extraMappings.contains {
                leaf.virtualAddress >= $0.virtualBase && leaf.virtualAddress - $0.virtualBase < $0.length
            }
            if amd64 && leaf.kind.isExecutable && !onExecutableSegment && !extra {
                problems.append("\(leaf) is executable outside the executable segments")
            }
        }
    }
    for segment in segments {
        var page: UInt64 = 0
        while page < segment.pageLength {
            let translation = try space.lookup(segment.pageVirtualBase &+ page)
            let kindMatches =
                translation?.kind.isWritable == segment.kind.isWritable
                && (!amd64 || translation?.kind.isExecutable == segment.kind.isExecutable)
            if translation?.physicalAddress != segment.pagePhysicalBase + page || !kindMatches {
                problems.append(
                    "segment \(segment.index) page \(segment.pageVirtualBase &+ page) translates to \(String(describing: translation))"
                )
            }
            page += 0x1000
        }
    }
    return problems
}
