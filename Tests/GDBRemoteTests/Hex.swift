/// `value` in lowercase hexadecimal without a prefix, as the GDB remote protocol writes numbers: the one hex
/// formatter of this test target.
func hex(_ value: some BinaryInteger) -> String { String(value, radix: 16) }
