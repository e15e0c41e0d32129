// The probe runtime's console protocol (docs/layout.md, "Hypercalls": console mode, boot-info flag bit 0):
// where there is no hypercall port (QEMU), the probe guests print their reports as lines, in lowercase hex
// without 0x, and a host in the loop answers copy-on-write requests on the same serial line.

/// A copy-on-write request: the faulting address and, from runtimes that send it, the #PF error code.
struct CopyOnWriteRequest: Equatable, CustomStringConvertible {
    var address: UInt64
    var errorCode: UInt64?

    var description: String { "C " + hex(address, prefix: "") + (errorCode.map { " " + hex($0, prefix: "") } ?? "") }
}

/// One line of the protocol.
enum ProbeLine: Equatable {
    /// `R <index> <outcome> <a> <b> <c> <d>`: one report, the six numbers of hypercall 1.
    case report([UInt64])
    /// `F <vector> <error> <cr2> <rip>`: an exception outside any probe; the run ends.
    case fatal([UInt64])
    /// `D`: every probe ran; the run ends.
    case done
    /// `C <cr2> [<error>]` (boot-info flag bit 1): resolve copy-on-write, then one byte on COM1.
    case copyOnWrite(CopyOnWriteRequest)
    /// Anything else.
    case other(String)

    /// Reads one line (without its newline).
    init(parsing line: String) {
        let fields = line.split(separator: " ").map(String.init)
        let numbers = fields.dropFirst().map { UInt64($0, radix: 16) }
        let valid = numbers.allSatisfy { $0 != nil }
        switch fields.first {
        case "R" where numbers.count == 6 && valid: self = .report(numbers.map { $0! })
        case "F" where numbers.count == 4 && valid: self = .fatal(numbers.map { $0! })
        case "D" where numbers.isEmpty: self = .done
        case "C" where (1...2).contains(numbers.count) && valid:
            self = .copyOnWrite(
                CopyOnWriteRequest(address: numbers[0]!, errorCode: numbers.count == 2 ? numbers[1] : nil))
        default: self = .other(line)
        }
    }
}

/// Everything the probe guest printed in console mode.
struct ProbeConsole: Equatable, CustomStringConvertible {
    /// The `R` lines, six numbers each.
    var reports: [[UInt64]] = []
    /// The `F` line, if any.
    var fatal: [UInt64]? = nil
    /// Whether the `D` line came.
    var done = false
    /// The `C` lines, in order.
    var copyOnWriteRequests: [CopyOnWriteRequest] = []
    /// Lines that are none of those (must stay empty).
    var otherLines: [String] = []

    init(parsing text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            switch ProbeLine(parsing: line) {
            case .report(let numbers): reports.append(numbers)
            case .fatal(let numbers): fatal = numbers
            case .done: done = true
            case .copyOnWrite(let request): copyOnWriteRequests.append(request)
            case .other where line.isEmpty: break
            case .other(let line): otherLines.append(line)
            }
        }
    }

    var description: String {
        (copyOnWriteRequests.map(\.description)
            + reports.map { "R " + $0.map { hex($0, prefix: "") }.joined(separator: " ") }
            + (fatal.map { ["F " + $0.map { hex($0, prefix: "") }.joined(separator: " ")] } ?? [])
            + (done ? ["D"] : []) + otherLines).joined(separator: "\n")
    }
}
