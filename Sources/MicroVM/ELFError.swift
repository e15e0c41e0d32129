public import PageTables

/// Why an ELF file cannot be a guest: one case per check ``ELFLayout`` makes, each describing itself in one
/// line (no newline) that names the field or segment at fault.
///
/// Segments are numbered by their index in the program header table (the first header is 0), as `readelf -l`
/// lists them.
public enum ELFError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file does not start with `\x7fELF`.
    case notELF
    /// The file ends before the ELF header does (`needed` bytes: 16 for `e_ident`, 52 or 64 for the header).
    case truncatedHeader(needed: Int, fileSize: UInt64)
    /// `EI_CLASS` is neither `ELFCLASS32` (1) nor `ELFCLASS64` (2).
    case unknownClass(UInt8)
    /// `EI_CLASS` is valid but not the one `architecture` needs.
    case classMismatch(fileClass: UInt8, architecture: Architecture)
    /// `EI_DATA` is not `ELFDATA2LSB` (1).
    case notLittleEndian(UInt8)
    /// `EI_VERSION` (in `e_ident`) or `e_version` is not `EV_CURRENT` (1).
    case unsupportedVersion(field: String, value: UInt32)
    /// `e_type` is not `ET_EXEC` (2).
    case notExecutable(type: UInt16)
    /// `e_machine` is not the one `architecture` needs.
    case machineMismatch(machine: UInt16, architecture: Architecture)
    /// `e_phentsize` is not the size of one program header of the file's class (32 or 56).
    case programHeaderSizeMismatch(size: UInt16, expected: Int)
    /// `e_phnum` is `PN_XNUM` (0xFFFF): the count lives in section header 0, which microvm does not read.
    case extendedProgramHeaderCount
    /// The program header table does not lie inside the file.
    case programHeadersOutsideFile(offset: UInt64, count: Int, entrySize: Int, fileSize: UInt64)
    /// No `PT_LOAD` header with a non-zero `p_memsz`: nothing to load.
    case noLoadableSegment
    /// More loadable segments than the boot-information block can list.
    case tooManySegments(count: Int, maximum: Int)
    /// `p_filesz` exceeds `p_memsz`.
    case segmentFileSizeExceedsMemorySize(segment: Int, fileSize: UInt64, memorySize: UInt64)
    /// `[p_offset, p_offset + p_filesz)` does not lie inside the file (or the sum overflows).
    case segmentOutsideFile(segment: Int, offset: UInt64, size: UInt64, fileSize: UInt64)
    /// `p_vaddr` and `p_paddr` differ modulo 4 KiB: no page table can map one onto the other.
    case segmentMisaligned(segment: Int, virtualAddress: UInt64, physicalAddress: UInt64)
    /// The segment's virtual range wraps or leaves the architecture's virtual address space.
    case segmentOutsideVirtualSpace(
        segment: Int, virtualAddress: UInt64, memorySize: UInt64, architecture: Architecture)
    /// The segment's physical range wraps or is wider than the page tables' physical addresses.
    case segmentOutsidePhysicalSpace(
        segment: Int, physicalAddress: UInt64, memorySize: UInt64, architecture: Architecture)
    /// Two segments share bytes, of virtual (`physical == false`) or physical memory.
    case segmentsOverlap(first: Int, second: Int, physical: Bool, address: UInt64)
    /// Two segments share a page but want different permissions for it.
    case segmentsSharePageWithDifferentPermissions(
        first: Int, second: Int, physical: Bool, page: UInt64, firstPermissions: String, secondPermissions: String)
    /// Two segments share a page but place it differently (`p_vaddr - p_paddr` differs): one virtual page
    /// would need two frames, or one frame two virtual pages with bytes of both.
    case segmentsSharePageAtDifferentOffsets(first: Int, second: Int, physical: Bool, page: UInt64)
    /// `e_entry` is not inside any segment with `PF_X`.
    case entryOutsideExecutableSegments(entry: UInt64)
    /// The bytes could not be read (an I/O error of whoever supplies them).
    case readFailed(String)

    public var description: String {
        switch self {
        case .notELF:
            "not an ELF file (no \\x7fELF magic)"
        case .truncatedHeader(let needed, let fileSize):
            "truncated ELF header: \(needed) bytes needed, the file has \(fileSize)"
        case .unknownClass(let value):
            "unknown ELF class \(value) (EI_CLASS must be 1, ELFCLASS32, or 2, ELFCLASS64)"
        case .classMismatch(let fileClass, let architecture):
            "ELF class \(ELFLayout.className(fileClass)) does not match \(architecture), which needs \(ELFLayout.className(ELFLayout.fileClass(for: architecture)))"
        case .notLittleEndian(let value):
            "ELF data encoding \(value) is not little-endian (EI_DATA must be 1, ELFDATA2LSB)"
        case .unsupportedVersion(let field, let value):
            "ELF \(field) \(value) is not 1 (EV_CURRENT)"
        case .notExecutable(let type):
            "ELF type \(ELFLayout.typeName(type)) is not an executable: link a static executable (ET_EXEC)"
        case .machineMismatch(let machine, let architecture):
            "ELF machine \(ELFLayout.machineName(machine)) does not match \(architecture), which needs \(ELFLayout.machineName(ELFLayout.machine(for: architecture)))"
        case .programHeaderSizeMismatch(let size, let expected):
            "program header size (e_phentsize) \(size) is not \(expected)"
        case .extendedProgramHeaderCount:
            "program header count 0xffff (PN_XNUM, extended numbering) is not supported"
        case .programHeadersOutsideFile(let offset, let count, let entrySize, let fileSize):
            "program headers (\(count) x \(entrySize) bytes at offset \(hex(offset))) extend past the end of the file (\(fileSize) bytes)"
        case .noLoadableSegment:
            "no loadable segment (PT_LOAD with a non-zero p_memsz): nothing to load"
        case .tooManySegments(let count, let maximum):
            "\(count) loadable segments are more than the \(maximum) the boot-information block can list"
        case .segmentFileSizeExceedsMemorySize(let segment, let fileSize, let memorySize):
            "segment \(segment): file size \(hex(fileSize)) exceeds memory size \(hex(memorySize))"
        case .segmentOutsideFile(let segment, let offset, let size, let fileSize):
            "segment \(segment): its \(hex(size)) file bytes at offset \(hex(offset)) extend past the end of the file (\(fileSize) bytes)"
        case .segmentMisaligned(let segment, let virtualAddress, let physicalAddress):
            "segment \(segment): virtual address \(hex(virtualAddress)) and physical address \(hex(physicalAddress)) differ modulo 4 KiB, which page tables cannot map"
        case .segmentOutsideVirtualSpace(let segment, let virtualAddress, let memorySize, let architecture):
            "segment \(segment): \(hex(memorySize)) bytes at virtual address \(hex(virtualAddress)) are outside the \(architecture) virtual address space"
                + (architecture == .amd64 ? " (48-bit canonical, either half)" : " (4 GiB)")
        case .segmentOutsidePhysicalSpace(let segment, let physicalAddress, let memorySize, let architecture):
            "segment \(segment): \(hex(memorySize)) bytes at physical address \(hex(physicalAddress)) are beyond the \(architecture) physical address space"
        case .segmentsOverlap(let first, let second, let physical, let address):
            "segments \(first) and \(second) overlap at \(physical ? "physical" : "virtual") address \(hex(address))"
        case .segmentsSharePageWithDifferentPermissions(let first, let second, let physical, let page, let a, let b):
            "segments \(first) (\(a)) and \(second) (\(b)) share the \(physical ? "physical" : "virtual") page \(hex(page)) with different permissions"
        case .segmentsSharePageAtDifferentOffsets(let first, let second, let physical, let page):
            "segments \(first) and \(second) share the \(physical ? "physical" : "virtual") page \(hex(page)) but map it at different offsets (p_vaddr - p_paddr differs)"
        case .entryOutsideExecutableSegments(let entry):
            "entry point \(hex(entry)) is not inside an executable (PF_X) segment"
        case .readFailed(let detail):
            detail
        }
    }
}
