/// `value` in lowercase hexadecimal with a `0x` prefix: the one hex formatter of this test target.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
