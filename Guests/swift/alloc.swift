// alloc64 (amd64): the heap, for guests that use classes, arrays and strings.
//
// What it does: appends the squares of 1...100 to an array (its buffer grows several times: posix_memalign
// and memcpy / memmove of the runtime, Runtime/support.c), sums them through a class instance (a heap object
// with reference counting), prints the result with Embedded Swift's own `print` and string interpolation
// (which write through putchar to the console port), then the bytes the bump allocator handed out, reports
// [count, sum, heap bytes] and halts.
//
// What the host must see: exactly
//
//     alloc64: the squares of 1...100 sum to 338350
//     alloc64: N bytes of heap
//
// (N > 0, the third value of the report), one report [100, 338350, N], then HLT, status 0.

import GuestSupport

/// A running total on the heap.
final class Total {
    var value: UInt64 = 0
    func add(_ amount: UInt64) { value &+= amount }
}

func guestMain(_ boot: BootInfo) {
    var squares: [UInt64] = []
    for n in UInt64(1)...100 { squares.append(n * n) }
    let total = Total()
    for square in squares { total.add(square) }
    print("alloc64: the squares of 1...100 sum to \(total.value)")
    let used = UInt64(microvm_heap_used())
    Console.write("alloc64: ")
    Console.write(decimal: used)
    Console.write(" bytes of heap\n")
    Hypercall.report(UInt64(squares.count), total.value, used, count: 3)
}
