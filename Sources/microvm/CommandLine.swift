import GDBRemote
import MicroVM
import PageTables

/// The parsed command line.
struct Options {
    var configuration: MachineConfiguration
    /// The guest file's name exactly as given: bytes, which go to the kernel unchanged.
    var guestPath: [UInt8]?
    /// Whether `--load` was given (an ELF guest refuses it).
    var loadAddressGiven = false
    var dumpTables = false
    var trace = false
    var showHelp = false
    /// `--save-snapshot FILE`.
    var savePath: String?
    /// `--restore FILE`.
    var restorePath: String?
    /// `--repeat N`.
    var repeatCount = 1
    /// The layout options given (which `--restore` refuses: the snapshot has its own).
    var layoutOptions: [String] = []
    /// Whether `--arch` was given.
    var architectureGiven = false
    /// Whether `--timeout` was given (under `--gdb` there is none by default).
    var timeoutGiven = false
    /// `--gdb ADDR`: where to wait for gdb.
    var gdbEndpoint: GDBEndpoint?
}

/// A command-line mistake: one line for a person, exit status 2.
struct UsageError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

let usage = """
    USAGE: microvm [options] [guest.bin | guest.elf]

    Boots a flat guest binary, or an ELF executable (detected by its \\x7fELF magic), in a KVM micro-VM;
    with no guest, boots the built-in demo for --arch.

    OPTIONS:
      --arch amd64|i686       guest architecture (default amd64)
      --memory SIZE           guest RAM, with K, M or G (default 16M)
      --load ADDR             load address of a flat image (default 0x100000; not for ELF guests)
      --entry ADDR            entry point (default: the load address, or an ELF guest's e_entry)
      --map VA=PA:LEN:PERMS   extra mapping; PERMS from r w x c (copy-on-write) u (user); repeatable
      --page-size 4k|auto     leaf sizes of the boot tables (default auto: 2 MiB / 4 MiB where aligned)
      --timeout DURATION      e.g. 10s, 500ms, 0 for none (default 10s)
      --trace                 print every VM exit to standard error
      --dump-tables           print the address space to standard error at boot and after the run
      --kvm PATH              the KVM device (default /dev/kvm)
      --save-snapshot FILE    save a snapshot at the guest's snapshot request (hypercall 4), or at the end
      --restore FILE          continue from a snapshot file instead of booting a guest file
      --repeat N              run N times, resetting to the snapshot (or to the boot state) between runs;
                              prints one line of counts per outcome
      --gdb [HOST]:PORT       wait for gdb there before the first instruction (HOST defaults to 127.0.0.1;
                              port 0 picks a free one) and serve it; no timeout unless --timeout is given
      -h, --help              show this help

    EXIT STATUS: 0 after hlt; the value written to port 0xF4; 2 bad input; 3 KVM unusable;
    74 the console output could not be written; 124 timeout; 125 the guest failed (triple fault,
    unbacked memory, unknown port, ...); 128+N stopped by signal N (130 SIGINT, 143 SIGTERM);
    with --gdb, 129 gdb went away before the guest ended, 137 gdb killed the guest.
    """

/// Parses `arguments` (without the program name), each as the bytes the kernel passed.
///
/// Every option may be given once, except `--map`; options that take no value refuse `--flag=value`.
func parseOptions(_ arguments: [[UInt8]]) throws(UsageError) -> Options {
    var options = Options(configuration: MachineConfiguration(architecture: .amd64, image: []))
    var seen: Set<String> = []
    var index = 0
    while index < arguments.count {
        let raw = arguments[index]
        let argument = String(decoding: raw, as: UTF8.self)
        var flag = argument
        var inline: String? = nil
        if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
            flag = String(argument[..<equals])
            inline = String(argument[argument.index(after: equals)...])
        }
        /// The option's value: after `=`, or the next argument.
        func value() throws(UsageError) -> String {
            if let inline { return inline }
            index += 1
            guard index < arguments.count else { throw UsageError("\(flag) needs a value") }
            return String(decoding: arguments[index], as: UTF8.self)
        }
        /// Refuses `--flag=value` for an option that takes none.
        func noValue() throws(UsageError) {
            if let inline { throw UsageError("\(flag) takes no value (got \(quoted(inline)))") }
        }
        let isOption = argument.hasPrefix("-") && argument != "-"
        if isOption && flag != "--map" {
            let name = flag == "-h" ? "--help" : flag
            guard seen.insert(name).inserted || !knownOptions.contains(name) else {
                throw UsageError("\(name) is given more than once")
            }
        }
        switch flag {
        case "-h", "--help":
            try noValue()
            options.showHelp = true
        case "--arch":
            options.architectureGiven = true
            let text = try value()
            guard let arch = Architecture(rawValue: text) else {
                throw UsageError("--arch: unknown architecture \(quoted(text)) (use amd64 or i686)")
            }
            options.configuration.architecture = arch
        case "--memory":
            options.layoutOptions.append(flag)
            options.configuration.memorySize = try parseMemorySize(try value())
        case "--load":
            options.layoutOptions.append(flag)
            options.configuration.loadAddress = try parseAddress(try value(), flag: flag)
            options.loadAddressGiven = true
        case "--entry":
            options.layoutOptions.append(flag)
            options.configuration.entryPoint = try parseAddress(try value(), flag: flag)
        case "--map":
            options.layoutOptions.append(flag)
            options.configuration.extraMappings.append(try parseMapping(try value()))
        case "--page-size":
            options.layoutOptions.append(flag)
            let text = try value()
            guard let policy = MachineConfiguration.PageSizePolicy(rawValue: text.lowercased()) else {
                throw UsageError("--page-size: \(quoted(text)) is not 4k or auto")
            }
            options.configuration.pageSizePolicy = policy
        case "--timeout":
            let text = try value()
            guard let duration = parseDuration(text) else {
                throw UsageError(
                    "--timeout: \(quoted(text)) is not a duration from 0 to 100 years (e.g. 10s, 500ms, 0 for none)")
            }
            options.configuration.timeout = duration == .zero ? nil : duration
            options.timeoutGiven = true
        case "--trace":
            try noValue()
            options.trace = true
        case "--dump-tables":
            try noValue()
            options.dumpTables = true
        case "--kvm":
            options.configuration.kvmPath = try value()
        case "--save-snapshot":
            options.savePath = try value()
        case "--restore":
            options.restorePath = try value()
        case "--repeat":
            let text = try value()
            guard let count = parseNumber(text), count >= 1, count <= 1_000_000_000 else {
                throw UsageError("--repeat: \(quoted(text)) is not a count from 1 to 1000000000")
            }
            options.repeatCount = Int(count)
        case "--gdb":
            let text = try value()
            guard let endpoint = GDBEndpoint(parsing: text) else {
                throw UsageError("--gdb: \(quoted(text)) is not [HOST]:PORT (e.g. 127.0.0.1:1234 or :1234)")
            }
            options.gdbEndpoint = endpoint
        default:
            if isOption { throw UsageError("unknown option \(quoted(raw)) (see --help)") }
            if let first = options.guestPath {
                throw UsageError("more than one guest file given (\(quoted(first)) and \(quoted(raw)))")
            }
            options.guestPath = raw
        }
        index += 1
    }
    if options.restorePath != nil {
        if let guest = options.guestPath {
            throw UsageError("--restore continues a snapshot: a guest file (\(quoted(guest))) does not go with it")
        }
        if let option = options.layoutOptions.first {
            throw UsageError("\(option) does not go with --restore: the snapshot keeps its own layout")
        }
    }
    if options.gdbEndpoint != nil {
        if options.repeatCount > 1 { throw UsageError("--repeat does not go with --gdb: gdb debugs one run") }
        if options.savePath != nil {
            throw UsageError("--save-snapshot does not go with --gdb: the guest's snapshot requests run on under gdb")
        }
    }
    return options
}

/// The options ``parseOptions(_:)`` knows, by their long names.
let knownOptions: Set<String> = [
    "--help", "--arch", "--memory", "--load", "--entry", "--map", "--page-size", "--timeout", "--trace",
    "--dump-tables", "--kvm", "--save-snapshot", "--restore", "--repeat", "--gdb",
]

/// `--memory`'s value: a size of at most 3 GiB.
func parseMemorySize(_ text: String) throws(UsageError) -> UInt64 {
    if let size = parseSize(text), size > 0 { return size }
    // All ASCII digits (and separators) but no size: the number itself is too large for any integer.
    let digits = text.last.map({ "KkMmGg".contains($0) }) == true ? text.dropLast() : Substring(text)
    if digits.contains(where: isASCIIDigit) && digits.allSatisfy({ isASCIIDigit($0) || $0 == "_" }) {
        throw UsageError("--memory: \(quoted(text)) is too large: at most 3G")
    }
    throw UsageError("--memory: \(quoted(text)) is not a size (a number with an optional K, M or G suffix)")
}

func isASCIIDigit(_ character: Character) -> Bool { character.isASCII && character.isNumber }

/// `4096`, `0x1000`, `16M`, `4K`, `1G` (binary multiples); ASCII digits only.
func parseSize(_ text: String) -> UInt64? {
    guard let last = text.last else { return nil }
    let shifts: [Character: UInt64] = ["K": 10, "k": 10, "M": 20, "m": 20, "G": 30, "g": 30]
    if let shift = shifts[last] {
        guard let number = parseNumber(String(text.dropLast())), number <= UInt64.max >> shift else { return nil }
        return number << shift
    }
    return parseNumber(text)
}

/// Decimal or `0x` hexadecimal, `_` allowed as a separator; ASCII digits only.
func parseNumber(_ text: String) -> UInt64? {
    let cleaned = String(text.filter { $0 != "_" })
    guard !cleaned.isEmpty, cleaned.allSatisfy(\.isASCII) else { return nil }
    if cleaned.hasPrefix("0x") || cleaned.hasPrefix("0X") { return UInt64(cleaned.dropFirst(2), radix: 16) }
    return UInt64(cleaned, radix: 10)
}

func parseAddress(_ text: String, flag: String) throws(UsageError) -> UInt64 {
    guard let address = parseNumber(text) else { throw UsageError("\(flag): \(quoted(text)) is not an address") }
    return address
}

/// `10s`, `500ms`, `2` (seconds), `0`; `nil` for anything else, negative, or beyond 100 years.
func parseDuration(_ text: String) -> Duration? {
    guard text.allSatisfy(\.isASCII) else { return nil }
    let limit: Double = 100 * 365 * 24 * 3600 * 1000  // milliseconds
    var milliseconds: Double
    if text.hasSuffix("ms"), let ms = Double(text.dropLast(2)) {
        milliseconds = ms
    } else if text.hasSuffix("s"), let s = Double(text.dropLast()) {
        milliseconds = s * 1000
    } else if let s = Double(text) {
        milliseconds = s * 1000
    } else {
        return nil
    }
    guard milliseconds.isFinite, milliseconds >= 0, milliseconds <= limit else { return nil }
    // A positive timeout never rounds down to zero, which would mean "none".
    if milliseconds > 0 { milliseconds = max(1, milliseconds.rounded(.up)) }
    return .milliseconds(Int64(milliseconds))
}

/// `VA=PA:LEN:PERMS`, e.g. `0x40000000=0x200000:2M:rw`.
func parseMapping(_ text: String) throws(UsageError) -> Mapping {
    let malformed = UsageError(
        "--map: \(quoted(text)) is malformed: expected VA=PA:LEN:PERMS, e.g. 0x40000000=0x200000:2M:rw")
    let halves = text.split(separator: "=", omittingEmptySubsequences: false)
    guard halves.count == 2 else { throw malformed }
    let parts = halves[1].split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 3, let va = parseNumber(String(halves[0])), let pa = parseNumber(String(parts[0])),
        let length = parseSize(String(parts[1]))
    else { throw malformed }
    var write = false, execute = false, cow = false, user = false
    for letter in parts[2] {
        switch letter {
        case "r": break  // every present x86 page is readable
        case "w": write = true
        case "x": execute = true
        case "c": cow = true
        case "u": user = true
        default:
            throw UsageError("--map: \(quoted(text)): unknown permission \(quoted(String(letter))) (use r, w, x, c, u)")
        }
    }
    guard !(cow && write) else {
        throw UsageError("--map: \(quoted(text)): c (copy-on-write) pages are read-only until written; drop w")
    }
    guard length > 0 else { throw UsageError("--map: \(quoted(text)): length is zero") }
    let kind: MappingKind = cow ? .copyOnWrite(executable: execute) : .basic(writable: write, executable: execute)
    return Mapping(physicalBase: pa, virtualBase: va, length: length, kind: kind, userAccessible: user)
}
