// swift-tools-version:6.1
import PackageDescription

// The benchmark suite of microvm: its own package, so the main build stays lean. It depends on the main
// package by path and is only meant to be built in release:
//
//     swift build -c release --package-path Benchmarks
//
// (scripts/bench.sh does that, runs every group and writes the report). The whole-process C baseline,
// chost/main.c, is compiled by bench.sh with the toolchain's clang alone: linked by SwiftPM it would carry
// the Swift runtime, which is not what a C host pays at start-up.
//
// A path dependency's identity is the last component of its path, i.e. whatever the clone's directory is
// called; compute it so the product references below work in any checkout.
let mainPackage = Context.packageDirectory.split(separator: "/").dropLast().last.map { String($0).lowercased() }
    ?? "microvm"

let package = Package(
    name: "microvm-benchmarks",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "microvm-bench", targets: ["microvm-bench"]),
    ],
    dependencies: [
        .package(path: "..")
    ],
    targets: [
        // The C baselines: page-table loops and a minimal KVM host (library), at -O2, with jumps kept inside
        // 32-byte windows as scripts/bench.sh builds the Swift side (see the JCC-erratum note there), and each
        // function on a 64-byte line, so the C loops sit at the same place in every build.
        .target(
            name: "CBaseline",
            cSettings: [.unsafeFlags(["-O2", "-mbranches-within-32B-boundaries", "-falign-functions=64"])]),
        // The harness: every in-process group, TSV on stdout.
        .executableTarget(
            name: "microvm-bench",
            dependencies: [
                "CBaseline",
                .product(name: "MicroVM", package: mainPackage),
                .product(name: "PageTables", package: mainPackage),
            ]),
    ]
)
