// swifthello64 (amd64) and swifthello32 (i686): the smallest Embedded Swift guest.
//
// What it does: writes "hello from Swift (amd64)\n" (or "(i686)") to the console port 0x3F8, one `out` per
// byte, and returns from guestMain, after which the runtime executes `hlt`.
//
// What the host must see: 25 (i686: 24) single-byte OUT exits on port 0x3F8 whose bytes are exactly that line,
// then a HLT exit: the run ends with status 0. With boot-info flag bit 0 (the QEMU oracle, where `hlt` never
// ends the run) the runtime writes 0 to the exit port 0xF4 first: QEMU's isa-debug-exit ends with status 1.
//
// Relies on: the runtime in Runtime/ (start code, Console); the default load address 0x100000 (Swift guests
// are linked there). Uses the stack below 0x80000 and nothing else.

func guestMain(_ boot: BootInfo) {
    #if arch(x86_64)
        Console.write("hello from Swift (amd64)\n")
    #else
        Console.write("hello from Swift (i686)\n")
    #endif
}
