// Printing on the console port 0x3F8: each byte is one `out`, one VM exit, one byte on the host's stdout.

import GuestSupport

enum Console {
    /// COM1's data register; microvm copies every byte written to it to standard output.
    static let port: UInt16 = 0x3F8

    /// COM1's line status register: bit 0 is set when a received byte is waiting (QEMU's serial port; microvm
    /// has no console input and ends the run on an `in` from it).
    static let lineStatusPort: UInt16 = 0x3FD

    /// Hex digits of an address as the host prints them: 16 on amd64, 8 on i686.
    #if arch(x86_64)
        static let addressDigits = 16
    #else
        static let addressDigits = 8
    #endif

    /// One byte.
    @inline(__always) static func write(_ byte: UInt8) { guest_outb(port, byte) }

    /// Waits for one byte from the console (console mode under QEMU only).
    static func readByte() -> UInt8 {
        while guest_inb(lineStatusPort) & 1 == 0 {}
        return guest_inb(port)
    }

    /// A string literal's UTF-8 bytes.
    static func write(_ text: StaticString) {
        text.withUTF8Buffer { bytes in
            for byte in bytes { write(byte) }
        }
    }

    /// `count` copies of `byte` (padding).
    static func write(_ byte: UInt8, count: Int) {
        var left = count
        while left > 0 {
            write(byte)
            left -= 1
        }
    }

    /// `value` in decimal.
    static func write(decimal value: UInt64) {
        if value >= 10 { write(decimal: value / 10) }
        write(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10))
    }

    /// `value` in lowercase hex without `0x`, at least `digits` digits (zero-padded).
    static func write(hex value: UInt64, digits: Int = 1) {
        var count = 1
        while count < 16 && value >> UInt64(count * 4) != 0 { count += 1 }
        if digits > count { count = digits }
        while count > 0 {
            count -= 1
            let nibble = UInt8(truncatingIfNeeded: count < 16 ? (value >> UInt64(count * 4)) & 0xF : 0)
            write(nibble < 10 ? UInt8(ascii: "0") &+ nibble : UInt8(ascii: "a") &+ (nibble &- 10))
        }
    }

    /// `0x` and `value` as `digits` hex digits: `0x0000000000100000` (`0x00100000` on i686).
    static func write(address value: UInt64, digits: Int = addressDigits) {
        write("0x")
        write(hex: value, digits: digits)
    }

    /// How many characters `write(decimal:)` prints for `value`.
    static func decimalWidth(_ value: UInt64) -> Int {
        var width = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            width += 1
        }
        return width
    }
}
