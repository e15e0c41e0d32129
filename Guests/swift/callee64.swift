// callee64 (amd64): functions the host calls, in Embedded Swift; calls64.S's ABI (docs/layout.md, "Calls") on
// the runtime's Calls.swift.
//
// What it does: `Calls.serve` takes a 2-page call area from the heap (the page after the image), makes the
// ready hypercall (6) with the table below, and waits in its dispatch loop. Exports, in this order:
//   add(a, b)      -> a + b (integers, wrapping)
//   reverse(s)     -> s reversed: bytes byte by byte; a string character by character (UTF-8 sequences kept
//                     whole, so "héllo" gives "olléh"); the result has the argument's kind
//   greet(name)    -> calls the host function "log" with the string "hello, <name>!"; returns what "log"
//                     returned (an integer) plus 1
//   fail()         -> status 7, no result
//   nothing()      -> returns at once, no result (the round-trip benchmark)
//   heap()         -> the bytes of heap handed out so far (8192 and some: the call area; calls allocate nothing)
// Status codes: 1 a missing argument or one of another kind (every function checks its arguments), 2 a result
// that does not fit in the call area, 7 fail(), 100 + the hypercall's status when "log" cannot be called
// (101: no "log" registered, 104: "log" threw), 110 when "log" returned something other than an integer.
//
// What the host must see: a run that ends ready, with those six names; then each call one entry and one exit
// (port 0x511), except greet, which also makes hypercall 7. Nothing on the console. A call to nothing() runs
// 8 instructions: the 7 of the dispatch loop and nothing()'s `ret`.
//
// Relies on: the runtime in Runtime/, the default load address 0x100000, RAM after the image for the heap.

import GuestSupport

let exports: [Export] = [
    Export("add") { call in
        guard let a = call.int(0), let b = call.int(1) else { return call.fail(CallStatus.badArguments) }
        call.returnInt(a &+ b)
    },
    Export("reverse") { call in
        guard let text = call.bytes(0), let kind = call.kind(0) else { return call.fail(CallStatus.badArguments) }
        call.returnBytes(count: text.count, kind: kind) { reversed in
            var end = text.count
            var next = 0
            while end > 0 {
                // One byte, or (a string) one UTF-8 sequence: its lead byte and the continuation bytes after it.
                var start = end - 1
                if kind == .string {
                    while start > 0 && text[start] & 0xC0 == 0x80 { start -= 1 }
                }
                var index = start
                while index < end {
                    reversed[next] = text[index]
                    next += 1
                    index += 1
                }
                end = start
            }
        }
    },
    Export("greet") { call in
        guard let name = call.bytes(0) else { return call.fail(CallStatus.badArguments) }
        // Composed in the call area's free space, where the host reads it (hypercall 7 copies it out).
        var message = ByteWriter(call.freeSpace)
        message.append("hello, ")
        message.append(name)
        message.append("!")
        guard !message.truncated else { return call.fail(CallStatus.resultTooLarge) }
        do throws(HostCallError) {
            guard case .int(let logged) = try Host.call("log", .string(message.written)) else {
                return call.fail(110)
            }
            call.returnInt(logged &+ 1)
        } catch {
            call.fail(100 &+ UInt32(truncatingIfNeeded: error.status))
        }
    },
    Export("fail") { call in call.fail(7) },
    Export("nothing") { _ in },
    Export("heap") { call in call.returnInt(Int64(bitPattern: UInt64(microvm_heap_used()))) },
]

func guestMain(_ boot: BootInfo) {
    Calls.serve(exports)
}
