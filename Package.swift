// swift-tools-version:6.2
import PackageDescription

/// Settings every Swift target shares (the Swift 6 language mode is the tools version's default).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

/// The product's modules also check memory safety strictly: every use of an unsafe construct is marked
/// `unsafe` where it happens, so the unsafe edges (the KVM wrapper, guest memory, the system calls around
/// them) stay visible and stay where they are.
let productSettings: [SwiftSetting] = swiftSettings + [.strictMemorySafety()]

let package = Package(
    name: "microvm",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "microvm", targets: ["microvm"]),
        .library(name: "MicroVM", targets: ["MicroVM"]),
        .library(name: "PageTables", targets: ["PageTables"]),
        .library(name: "KVMKit", targets: ["KVMKit"]),
        .library(name: "GDBRemote", targets: ["GDBRemote"]),
        .library(name: "MicroVMDebug", targets: ["MicroVMDebug"]),
    ],
    dependencies: [
        // `swift package generate-documentation --target MicroVM` (and KVMKit, GDBRemote, PageTables) builds
        // the DocC catalogs in Sources/*/*.docc. A command plugin only: no target links anything from it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0")
    ],
    targets: [
        // <linux/kvm.h>, its request codes as constants, one non-variadic ioctl.
        .systemLibrary(name: "CKVM", path: "Sources/CKVM"),
        // memfd_create and the seal constants, which Swift's Glibc module does not offer.
        .systemLibrary(name: "CMemory", path: "Sources/CMemory"),
        // The page-table engine: pure Swift, no KVM, no unsafe code.
        .target(name: "PageTables", swiftSettings: productSettings),
        // Test doubles for the engine's table-ops protocols (in-place array, copy-on-first-write).
        .target(name: "PageTablesTestSupport", dependencies: ["PageTables"], swiftSettings: swiftSettings),
        // 1:1 Swift wrappers of /dev/kvm.
        .target(name: "KVMKit", dependencies: ["CKVM"], swiftSettings: productSettings),
        // A machine: guest memory, boot state, run loop, devices, diagnostics.
        .target(name: "MicroVM", dependencies: ["KVMKit", "PageTables", "CMemory"], swiftSettings: productSettings),
        // The GDB remote serial protocol stub: packets, a session against a target protocol, a TCP server.
        .target(name: "GDBRemote", swiftSettings: productSettings),
        // A machine as a gdb target: registers, memory through the guest's tables, breakpoints, debug stops.
        .target(
            name: "MicroVMDebug", dependencies: ["MicroVM", "GDBRemote", "KVMKit"], swiftSettings: productSettings),
        // The command-line front end.
        .executableTarget(
            name: "microvm", dependencies: ["MicroVM", "MicroVMDebug", "GDBRemote"], swiftSettings: productSettings),
        // Boots a guest many times in one process and prints descriptor and memory counts (leak test).
        .executableTarget(name: "microvm-soak", dependencies: ["MicroVM"], swiftSettings: productSettings),

        .testTarget(
            name: "PageTablesTests", dependencies: ["PageTables", "PageTablesTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(name: "GDBRemoteTests", dependencies: ["GDBRemote"], swiftSettings: swiftSettings),
        .testTarget(name: "KVMKitTests", dependencies: ["KVMKit", "CKVM"], swiftSettings: swiftSettings),
        .testTarget(
            name: "MicroVMDebugTests", dependencies: ["MicroVMDebug", "MicroVM", "GDBRemote", "KVMKit"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "MicroVMTests", dependencies: ["MicroVM", "PageTables", "PageTablesTestSupport", "KVMKit"],
            swiftSettings: swiftSettings),
    ]
)
