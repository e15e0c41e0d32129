#!/usr/bin/env bash
# Fuzz the microvm CLI: seeded, reproducible generated inputs, every ending classified against the contract.
#
#   scripts/fuzz.sh                          # --budget short: 1,226 runs, about 50 s, every class (CI)
#   scripts/fuzz.sh --budget long            # 32,000 runs, about 18 min, by hand
#   scripts/fuzz.sh --class vandal --count 500
#   scripts/fuzz.sh --class vandal --seed 1234 --count 1    # reproduce one case: verbose, files kept
#   scripts/fuzz.sh --self-test              # the classifier on synthetic endings; objdump of the x86 encodings;
#                                            # the snapshot corpus's checksums recomputed
#   scripts/fuzz.sh --help                   # every option, the classes, the contract table, the failure kinds
#
# The work is done by scripts/fuzz.py (Python 3 standard library only). Exit status 1 on any bad ending.
set -euo pipefail
exec python3 "$(dirname "${BASH_SOURCE[0]}")/fuzz.py" "$@"
