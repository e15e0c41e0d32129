import Foundation
import KVMKit
import Testing

/// What a hostile user broke on an earlier version, each pinned: one line, a documented status, no hang.
@Suite("microvm stays one line and bounded under hostile input")
struct RobustnessTests {
    func expectOneLine(
        _ result: CommandResult, _ line: String, status: Int32, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(result.stderr == "microvm: error: \(line)\n", sourceLocation: sourceLocation)
        #expect(result.status == status, sourceLocation: sourceLocation)
    }

    // MARK: Guest files

    @Test("a FIFO is refused before it is opened for a blocking read")
    func fifo() throws {
        let path = temporaryPath("guest.fifo")
        unlink(path)
        #expect(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        expectOneLine(try runMicrovm([path]), "guest file '\(path)' is a FIFO, not a regular file", status: 2)
    }

    @Test("a device is refused without reading it")
    func device() throws {
        expectOneLine(
            try runMicrovm(["/dev/zero"]), "guest file '/dev/zero' is a character device, not a regular file",
            status: 2)
    }

    @Test("a sparse 3 GiB file is refused by its size, before it is read")
    func sparseFile() throws {
        let path = temporaryPath("sparse.bin")
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        #expect(fd >= 0)
        #expect(ftruncate(fd, 3 << 30) == 0)
        close(fd)
        defer { unlink(path) }
        let start = ContinuousClock.now
        let result = try runMicrovm([path])
        expectOneLine(result, "guest image (3221225472 bytes at 0x100000) does not fit in 16 MiB of RAM", status: 2)
        // Reading it would take seconds and gigabytes; refusing it takes a stat.
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test("a newline in a file name stays escaped on one line")
    func newlineInName() throws {
        expectOneLine(
            try runMicrovm(["no\nsuch.bin"]), "guest file 'no\\nsuch.bin' does not exist", status: 2)
    }

    @Test("a file name that is not UTF-8 reaches the kernel as bytes")
    func nonUTF8Name() throws {
        let result = try runShell(
            #"name=$(printf '/tmp/microvm-\377-hello.bin'); cp Guests/hello64.bin "$name" && "$MICROVM" "$name"; s=$?; rm -f "$name"; exit $s"#
        )
        #expect(result.stdout == "hello from microvm (amd64)\n")
        #expect(result.stderr == "")
        #expect(result.status == 0)
        expectOneLine(
            try runShell(#""$MICROVM" "$(printf '/tmp/none-\377.bin')""#),
            "guest file '/tmp/none-\\xff.bin' does not exist", status: 2)
    }

    // MARK: Flags

    @Test(
        "a flag that takes no value refuses one",
        arguments: [("--trace=no", "--trace"), ("--dump-tables=0", "--dump-tables"), ("--help=x", "--help")])
    func flagWithValue(_ argument: String, _ flag: String) throws {
        let value = String(argument.split(separator: "=")[1])
        expectOneLine(
            try runMicrovm([argument, "Guests/hello64.bin"]), "\(flag) takes no value (got '\(value)')", status: 2)
    }

    @Test("an option given twice is refused; --map may repeat")
    func repeatedOption() throws {
        expectOneLine(
            try runMicrovm(["--memory", "16M", "--memory=32M", "Guests/hello64.bin"]),
            "--memory is given more than once", status: 2)
        expectOneLine(try runMicrovm(["--trace", "--trace"]), "--trace is given more than once", status: 2)
    }

    @Test("non-ASCII digits are not a size", arguments: ["٣M", "½G", "１６M"])
    func nonASCIIDigits(_ text: String) throws {
        expectOneLine(
            try runMicrovm(["--memory", text]),
            "--memory: '\(text)' is not a size (a number with an optional K, M or G suffix)", status: 2)
    }

    @Test("a memory size just above the limit is said exactly")
    func memoryJustTooLarge() throws {
        expectOneLine(
            try runMicrovm(["--memory", "3073M", "Guests/hello64.bin"]),
            "memory 3073 MiB is too large: at most 3 GiB (guest RAM stays below the 4 GiB device hole)", status: 2)
    }

    @Test("microvm-soak checks its arguments")
    func soakArguments() throws {
        let usage = "usage: microvm-soak [--calls] GUEST.bin [COUNT]   (COUNT from 1 to 10000000, default 1000)"
        let negative = try runShell(#""$MICROVM_SOAK" Guests/hello64.bin -1"#)
        #expect(negative.stderr == "microvm-soak: error: '-1' is not a count from 1 to 10000000\n")
        #expect(negative.status == 2)
        let word = try runShell(#""$MICROVM_SOAK" Guests/hello64.bin many"#)
        #expect(word.stderr == "microvm-soak: error: 'many' is not a count from 1 to 10000000\n")
        #expect(word.status == 2)
        let help = try runShell(#""$MICROVM_SOAK" --help"#)
        #expect(help.stdout == usage + "\n")
        #expect(help.status == 0)
    }
}

/// The same, for runs that need a guest on KVM.
@Suite("microvm ends runs cleanly on KVM whatever happens around them", .enabled(if: kvmUsable, kvmReason))
struct RunRobustnessTests {
    func expectOneLine(
        _ result: CommandResult, _ line: String, status: Int32, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(result.stderr == "microvm: error: \(line)\n", sourceLocation: sourceLocation)
        #expect(result.status == status, sourceLocation: sourceLocation)
    }

    @Test("a guest that aliases its tables gets a bounded dump")
    func aliasedDump() throws {
        let result = try runMicrovm(["--dump-tables", "Guests/alias64.bin"])
        #expect(result.status == 0)
        #expect(result.stdout == "alias\n")
        let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        // Seven lines at boot (header and six ranges), the header after the run, 1,000 ranges, the count of
        // those not shown, where the walk stopped, and the empty string after the last newline.
        #expect(lines.count == 1011)
        #expect(lines[1008].hasSuffix(" more ranges not shown (at most 1000 lines)"))
        #expect(
            lines[1009]
                == "... the walk stopped: the walk entered more than 4096 tables: the tables reference themselves or each other"
        )
    }

    @Test("the timeout fires while standard output is blocked")
    func timeoutWithBlockedOutput() throws {
        // Nobody reads the pipe until microvm is done: its console writes block once the pipe is full.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: microvmPath)
        process.arguments = ["--timeout", "1s", "Guests/flood64.bin"]
        process.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let start = ContinuousClock.now
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate() }
        let elapsed = ContinuousClock.now - start
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 124)
        #expect(stderr.hasPrefix("microvm: error: timeout: the guest was still running after 1 s (RIP 0x"))
        #expect(stderr.split(separator: "\n").count == 1)
        #expect(elapsed < .seconds(4))
    }

    @Test("the timeout fires through a blocked console write even when the parent blocked the kick signal")
    func timeoutWithInheritedSignalMask() throws {
        // A process inherits its parent's signal mask: spawn microvm with the kick signal (SIGRTMIN by default,
        // as in the CLI) blocked, as a Dispatch worker thread may have it, and nobody reading its output: after
        // 2 s the console write has long been blocked on the full pipe, and only the kick can interrupt it.
        var kick = sigset_t()
        var previous = sigset_t()
        sigemptyset(&kick)
        sigaddset(&kick, KVMSystem.kickSignal)
        pthread_sigmask(SIG_BLOCK, &kick, &previous)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: microvmPath)
        process.arguments = ["--timeout", "2s", "Guests/flood64.bin"]
        process.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let started = Result { try process.run() }
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        try started.get()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 124)
        #expect(stderr.hasPrefix("microvm: error: timeout: the guest was still running after 2 s (RIP 0x"))
    }

    @Test("a console write error ends the run with one line and status 74")
    func consoleWriteErrors() throws {
        expectOneLine(
            try runShell(#""$MICROVM" Guests/hello64.bin >&-"#),
            "cannot deliver the guest's console output: standard output is closed", status: 74)
        expectOneLine(
            try runShell(#""$MICROVM" Guests/hello64.bin > /dev/full"#),
            "cannot deliver the guest's console output: writing to standard output failed: No space left on device (errno 28)",
            status: 74)
        let broken = try runShell(#""$MICROVM" --timeout 5s Guests/flood64.bin | head -c 10 > /dev/null"#)
        #expect(broken.stderr == "microvm: error: cannot deliver the guest's console output: writing to standard output failed: Broken pipe (errno 32)\n")
    }

    @Test("broken pipe status: 74, not death by SIGPIPE")
    func brokenPipeStatus() throws {
        // `sh` has no PIPESTATUS: run microvm last in a pipeline whose reader is gone already.
        let result = try runShell(
            #"p=$(mktemp -u /tmp/microvm-pipe.XXXXXX) && mkfifo "$p" || exit 99; (exec 3<"$p") & "$MICROVM" --timeout 5s Guests/flood64.bin > "$p"; s=$?; rm -f "$p"; exit $s"#
        )
        #expect(result.status == 74)
        #expect(result.stderr.hasSuffix("Broken pipe (errno 32)\n"))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test(
        "a terminating signal stops the guest with one line and 128 + N",
        arguments: [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP"), (SIGQUIT, "SIGQUIT")])
    func terminatingSignal(_ signal: Int32, _ name: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: microvmPath)
        process.arguments = ["--timeout", "0", "Guests/loop64.bin"]
        process.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Wait for the guest's line: from then on it loops in the guest.
        _ = out.fileHandleForReading.availableData
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.interrupt() }
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 128 + signal)
        #expect(stderr.hasPrefix("microvm: error: stopped by \(name): the guest was at RIP 0x100"))
        #expect(stderr.split(separator: "\n").count == 1)
    }

    @Test("SIGUSR1 and SIGWINCH do not disturb a run")
    func harmlessSignals() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: microvmPath)
        process.arguments = ["--timeout", "1s", "Guests/loop64.bin"]
        process.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        _ = out.fileHandleForReading.availableData
        for _ in 0..<20 {
            kill(process.processIdentifier, SIGUSR1)
            kill(process.processIdentifier, SIGWINCH)
            usleep(5_000)
        }
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 124)
        #expect(stderr.hasPrefix("microvm: error: timeout: the guest was still running after 1 s (RIP 0x100015, "))
    }

    @Test("rep insb on the console port is an unknown-port line")
    func repIns() throws {
        let result = try runMicrovm(["Guests/repins64.bin"])
        #expect(result.stdout == "rep ins\n")
        expectOneLine(result, "unknown port: rep ins of 4 x 1 byte from port 0x3f8 at RIP 0x100023", status: 125)
    }

    @Test("an instruction this KVM cannot emulate is named with its bytes")
    func emulationFailure() throws {
        let result = try runMicrovm(["Guests/sse64.bin"])
        #expect(result.stdout == "sse\n")
        if access("/sys/module/kvm_pvm", F_OK) == 0 {
            expectOneLine(
                result,
                "this KVM could not emulate the instruction at RIP 0x100015 (bytes 66 0f ef c0 f4 eb fe 73 ...): KVMs that emulate guest code, as kvm_pvm does, cannot run x87, SSE arithmetic, popcnt or crc32",
                status: 125)
        } else {
            // kvm_intel / kvm_amd run the guest natively: SSE works there.
            #expect(result.status == 0)
        }
    }
}
