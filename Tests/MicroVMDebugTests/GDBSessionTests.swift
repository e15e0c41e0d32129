import Foundation
import Testing

/// The real gdb, in batch mode, against `microvm --gdb 127.0.0.1:0 guest`: the port is the one microvm
/// prints on its waiting line, so runs never collide.
@Suite("gdb debugs real guests through microvm --gdb", .enabled(if: gdbSuitesEnabled, gdbReason), .serialized)
struct GDBSessionTests {
    let symbols = elfSymbols(try! packageFile(debugmePath))

    /// The commands every session starts with.
    static func connect(_ port: UInt16) -> [String] {
        ["set confirm off", "set pagination off", "directory Guests/swift", "target remote 127.0.0.1:\(port)"]
    }

    static let debugmeOutput = "debugme: start\ndebugme: magic 0123456789abcdef\ndebugme: total 42\n"

    @Test("break, continue, registers, arguments and a local, next, stepi, memory in the upper half, to the end")
    func session() throws {
        _ = try requireGDB()
        let microvm = try MicrovmUnderGDB(["--gdb", "127.0.0.1:0", debugmePath])
        let port = try microvm.port()
        let output = try runGDB(
            Self.connect(port) + [
                "break scale", "continue", "info registers rip", "print value", "print factor", "next",
                "print product", "print total", "stepi", "x/8xb &magic", "x/8xb 0x103008", "delete", "continue",
            ], file: debugmePath)
        print(output)
        let text = lines(output)
        let scale = try #require(symbols["scale"])
        let magic = try #require(symbols["magic"])
        #expect(text.first == "0xffffffff80000000 in _start ()")
        // gdb puts the breakpoint after scale's prologue: at the first instruction of line 29.
        let planted = try #require(text.first { $0.hasPrefix("Breakpoint 1 at 0x") })
        #expect(planted.hasSuffix(": file debugme.swift, line 29."))
        let breakpoint = try #require(
            UInt64(planted.dropFirst("Breakpoint 1 at 0x".count).prefix { $0 != ":" }, radix: 16))
        #expect(breakpoint > scale.address && breakpoint < scale.address + scale.size)
        #expect(text.contains("Breakpoint 1, scale (value=..., factor=...) at debugme.swift:29"))
        #expect(text.contains("29\t    let product = value &* factor"))
        #expect(
            text.contains("rip            \(hex(breakpoint))  \(hex(breakpoint)) <scale+\(breakpoint - scale.address)>")
        )
        #expect(text.contains("$1 = {_value = 1}"))  // value
        #expect(text.contains("$2 = {_value = 7}"))  // factor
        #expect(text.contains("30\t    total &+= product"))  // next
        #expect(text.contains("$3 = {_value = 7}"))  // product
        #expect(text.contains("$4 = {_value = 0}"))  // total, before the first product is added
        // stepi: one instruction on, still in line 30.
        #expect(text.contains { $0.hasPrefix("0xffffffff8") && $0.hasSuffix("\t30\t    total &+= product") })
        let bytes = "0xef\t0xcd\t0xab\t0x89\t0x67\t0x45\t0x23\t0x01"
        #expect(text.contains("\(hex(magic.address)) <magic>:\t\(bytes)"))
        #expect(text.contains("0x103008:\t\(bytes)"))  // the same frame through the identity map
        #expect(text.contains("[Inferior 1 (Remote target) exited with code 052]"))  // 42, in octal
        #expect(try microvm.status() == 42)
        #expect(microvm.standardOutput == Self.debugmeOutput)
        #expect(microvm.standardError == "microvm: waiting for gdb on 127.0.0.1:\(port)\n")
    }

    @Test("Ctrl-C stops a spinning guest; kill ends microvm with one line and 137")
    func interrupt() throws {
        _ = try requireGDB()
        let microvm = try MicrovmUnderGDB(["--gdb", "127.0.0.1:0", "Guests/loop64.bin"])
        let port = try microvm.port()
        let output = try runGDB(
            Self.connect(port) + ["continue", "info registers rip", "x/2xb $pc", "kill"],
            interruptAfter: .seconds(2))
        print(output)
        let text = lines(output)
        #expect(text.contains("Program received signal SIGINT, Interrupt."))
        #expect(text.contains("0x0000000000100015 in ?? ()"))
        #expect(text.contains("rip            0x100015            0x100015"))
        #expect(text.contains("0x100015:\t0xe9\t0xfb"))  // jmp spin (rel32 -5)
        #expect(text.contains("[Inferior 1 (Remote target) killed]"))
        #expect(try microvm.status() == 137)
        #expect(microvm.standardOutput == "looping\n")
        #expect(
            microvm.standardError
                == "microvm: waiting for gdb on 127.0.0.1:\(port)\nmicrovm: error: gdb killed the guest at RIP 0x100015 after 8 exits\n"
        )
    }

    @Test("a breakpoint at scale's first byte: RIP is the function's address, the arguments in RDI and RSI; kill")
    func killAtFunctionEntry() throws {
        _ = try requireGDB()
        let scale = try #require(symbols["scale"]).address
        let microvm = try MicrovmUnderGDB(["--gdb", "127.0.0.1:0", debugmePath])
        let port = try microvm.port()
        let output = try runGDB(
            Self.connect(port) + ["break *scale", "continue", "info registers rip rdi rsi", "kill"], file: debugmePath)
        print(output)
        let text = lines(output)
        #expect(text.contains("Breakpoint 1 at \(hex(scale)): file debugme.swift, line 28."))
        #expect(text.contains("Breakpoint 1, scale (value=..., factor=...) at debugme.swift:28"))
        #expect(text.contains("rip            \(hex(scale))  \(hex(scale)) <scale>"))
        #expect(text.contains("rdi            0x1                 1"))
        #expect(text.contains("rsi            0x7                 7"))
        #expect(text.contains("[Inferior 1 (Remote target) killed]"))
        #expect(try microvm.status() == 137)
        #expect(microvm.standardOutput == "debugme: start\n")
        // 15 console bytes, then the breakpoint's exit.
        #expect(
            microvm.standardError
                == "microvm: waiting for gdb on 127.0.0.1:\(port)\nmicrovm: error: gdb killed the guest at RIP \(hex(scale)) after 16 exits\n"
        )
    }

    @Test("detach: the breakpoints go and the guest runs to its end, with its own status")
    func detach() throws {
        _ = try requireGDB()
        let microvm = try MicrovmUnderGDB(["--gdb", "127.0.0.1:0", debugmePath])
        let port = try microvm.port()
        let output = try runGDB(Self.connect(port) + ["break scale", "continue", "detach"], file: debugmePath)
        print(output)
        #expect(lines(output).contains("[Inferior 1 (Remote target) detached]"))
        #expect(try microvm.status() == 42)
        #expect(microvm.standardOutput == Self.debugmeOutput)
        #expect(microvm.standardError == "microvm: waiting for gdb on 127.0.0.1:\(port)\n")
    }

    @Test("a guest fault: gdb sees SIGSEGV with the registers, then the program terminated; microvm the usual line")
    func fault() throws {
        _ = try requireGDB()
        let microvm = try MicrovmUnderGDB(["--gdb", "127.0.0.1:0", "Guests/nullread64.bin"])
        let port = try microvm.port()
        let output = try runGDB(Self.connect(port) + ["continue", "info registers cr2", "continue"])
        print(output)
        let text = lines(output)
        #expect(text.contains("Program received signal SIGSEGV, Segmentation fault."))
        #expect(text.contains("cr2            0x10                16"))
        #expect(text.contains("Program terminated with signal SIGSEGV, Segmentation fault."))
        #expect(try microvm.status() == 125)
        let error = microvm.standardError.split(separator: "\n").last.map(String.init) ?? ""
        #expect(error.hasPrefix("microvm: error: triple fault: RIP 0x100021"))
        #expect(microvm.standardError.split(separator: "\n").count == 2)
    }

    @Test("software watchpoints (gdb single-steps and compares) catch the write to total")
    func softwareWatchpoint() throws {
        _ = try requireGDB()
        let microvm = try MicrovmUnderGDB(["--gdb", "127.0.0.1:0", debugmePath])
        let port = try microvm.port()
        let output = try runGDB(
            Self.connect(port) + [
                "break scale", "continue", "delete", "set can-use-hw-watchpoints 0", "watch total._value", "continue",
                "kill",
            ], file: debugmePath)
        print(output)
        let text = lines(output)
        #expect(text.contains("Watchpoint 2: total._value"))
        #expect(text.contains("Old value = 0"))
        #expect(text.contains("New value = 7"))
        #expect(try microvm.status() == 137)
    }
}
