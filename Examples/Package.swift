// swift-tools-version:6.1
import PackageDescription

// Programs that embed MicroVM the way a user of the library would: their own package, depending on the main
// one by path, so they build against this checkout and only through its public products.
//
//     swift run --package-path Examples embedder                      # boots Guests/calls64.bin
//     swift run --package-path Examples embedder path/to/calls64.bin
//
// A path dependency's identity is the last component of its path, i.e. whatever the clone's directory is
// called; compute it so the product references below work in any checkout.
let mainPackage = Context.packageDirectory.split(separator: "/").dropLast().last.map { String($0).lowercased() }
    ?? "microvm"

let package = Package(
    name: "microvm-examples",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "embedder", targets: ["embedder"]),
    ],
    dependencies: [
        .package(path: "..")
    ],
    targets: [
        // Boots a guest that exports functions, calls them, serves a host function, recovers from a fault and
        // a timeout with reset(), calls from async code, and attaches a port device; exits 0 only if every
        // check passed.
        .executableTarget(
            name: "embedder",
            dependencies: [.product(name: "MicroVM", package: mainPackage)]),
    ]
)
