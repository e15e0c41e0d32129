/// The XML target description gdb reads with `qXfer:features:read`: `target.xml`, which names the
/// architecture and includes one file per ``GDBFeature`` the architecture uses
/// (``GDBArchitecture/features``).
///
/// Generated from ``GDBArchitecture/registers``, so the description and the `g` packet cannot disagree.
/// Every register carries an explicit `regnum`; types not predefined by gdb (the flag layouts of EFLAGS,
/// MXCSR, CR0, CR4 and EFER, and the 128-bit vector union) are declared in the feature that uses them.
public struct GDBTargetDescription: Sendable {
    /// The architecture described.
    public let architecture: GDBArchitecture
    /// Every document by annex name (`target.xml` and the included feature files).
    public let documents: [String: String]

    /// The annex gdb asks for first.
    public static let rootAnnex = "target.xml"

    /// The description of `architecture` (built once per architecture, then shared).
    public init(architecture: GDBArchitecture) {
        self = architecture == .amd64 ? Self.amd64 : Self.i386
    }

    private static let amd64 = GDBTargetDescription(building: .amd64)
    private static let i386 = GDBTargetDescription(building: .i386)

    private init(building architecture: GDBArchitecture) {
        self.architecture = architecture
        var documents: [String: String] = [:]
        var includes = ""
        for feature in architecture.features {
            let annex = Self.annex(of: feature, architecture: architecture)
            documents[annex] = Self.featureDocument(feature, architecture: architecture)
            includes += "  <xi:include href=\"\(annex)\"/>\n"
        }
        documents[Self.rootAnnex] = """
            <?xml version="1.0"?>
            <!DOCTYPE target SYSTEM "gdb-target.dtd">
            <target version="1.0" xmlns:xi="http://www.w3.org/2001/XInclude">
              <architecture>\(architecture.gdbName)</architecture>
            \(includes)</target>

            """
        self.documents = documents
    }

    /// The file name under which `feature` is served, e.g. `microvm-amd64-core.xml`.
    public static func annex(of feature: GDBFeature, architecture: GDBArchitecture) -> String {
        let arch = architecture == .amd64 ? "amd64" : "i386"
        let part =
            switch feature {
            case .core: "core"
            case .sse: "sse"
            case .segments: "segments"
            case .system: "system"
            }
        return "microvm-\(arch)-\(part).xml"
    }

    private static func featureDocument(_ feature: GDBFeature, architecture: GDBArchitecture) -> String {
        let registers = architecture.registers.filter { $0.feature == feature }
        var xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE feature SYSTEM \"gdb-target.dtd\">\n"
        xml += "<feature name=\"\(feature.rawValue)\">\n"
        let wordBytes = architecture == .amd64 ? 8 : 4
        switch feature {
        case .core:
            xml += flags("x86_eflags", size: 4, eflagsFields)
        case .sse:
            xml += vectorTypes
            xml += flags("x86_mxcsr", size: 4, mxcsrFields)
        case .segments:
            break
        case .system:
            xml += flags("x86_cr0", size: wordBytes, cr0Fields)
            xml += flags("x86_cr4", size: wordBytes, cr4Fields)
            xml += flags("x86_efer", size: 8, eferFields)
        }
        for register in registers {
            xml += "  <reg name=\"\(register.name)\" bitsize=\"\(register.bitSize)\" type=\"\(register.type)\""
            xml += " regnum=\"\(register.number)\""
            if let group = register.group { xml += " group=\"\(group)\"" }
            xml += "/>\n"
        }
        return xml + "</feature>\n"
    }

    /// A `<flags>` type: one field per named bit (or bit range).
    private static func flags(_ id: String, size: Int, _ fields: [(String, Int, Int)]) -> String {
        var xml = "  <flags id=\"\(id)\" size=\"\(size)\">\n"
        for (name, start, end) in fields {
            xml += "    <field name=\"\(name)\" start=\"\(start)\" end=\"\(end)\"/>\n"
        }
        return xml + "  </flags>\n"
    }

    /// EFLAGS (Intel SDM Vol. 1 §3.4.3), the one-bit flags (IOPL, bits 12-13, is left out as gdb does).
    private static let eflagsFields: [(String, Int, Int)] = [
        ("CF", 0, 0), ("PF", 2, 2), ("AF", 4, 4), ("ZF", 6, 6), ("SF", 7, 7), ("TF", 8, 8), ("IF", 9, 9),
        ("DF", 10, 10), ("OF", 11, 11), ("NT", 14, 14), ("RF", 16, 16), ("VM", 17, 17),
        ("AC", 18, 18), ("VIF", 19, 19), ("VIP", 20, 20), ("ID", 21, 21),
    ]

    /// MXCSR (Intel SDM Vol. 1 §10.2.3).
    private static let mxcsrFields: [(String, Int, Int)] = [
        ("IE", 0, 0), ("DE", 1, 1), ("ZE", 2, 2), ("OE", 3, 3), ("UE", 4, 4), ("PE", 5, 5), ("DAZ", 6, 6),
        ("IM", 7, 7), ("DM", 8, 8), ("ZM", 9, 9), ("OM", 10, 10), ("UM", 11, 11), ("PM", 12, 12), ("FZ", 15, 15),
    ]

    /// CR0 (Intel SDM Vol. 3A §2.5).
    private static let cr0Fields: [(String, Int, Int)] = [
        ("PE", 0, 0), ("MP", 1, 1), ("EM", 2, 2), ("TS", 3, 3), ("ET", 4, 4), ("NE", 5, 5), ("WP", 16, 16),
        ("AM", 18, 18), ("NW", 29, 29), ("CD", 30, 30), ("PG", 31, 31),
    ]

    /// CR4 (Intel SDM Vol. 3A §2.5).
    private static let cr4Fields: [(String, Int, Int)] = [
        ("VME", 0, 0), ("PVI", 1, 1), ("TSD", 2, 2), ("DE", 3, 3), ("PSE", 4, 4), ("PAE", 5, 5), ("MCE", 6, 6),
        ("PGE", 7, 7), ("PCE", 8, 8), ("OSFXSR", 9, 9), ("OSXMMEXCPT", 10, 10), ("UMIP", 11, 11),
        ("LA57", 12, 12), ("VMXE", 13, 13), ("SMXE", 14, 14), ("FSGSBASE", 16, 16), ("PCIDE", 17, 17),
        ("OSXSAVE", 18, 18), ("SMEP", 20, 20), ("SMAP", 21, 21), ("PKE", 22, 22),
    ]

    /// IA32_EFER (Intel SDM Vol. 3A §2.2.1; AMD APM Vol. 2 §3.1.7).
    private static let eferFields: [(String, Int, Int)] = [
        ("SCE", 0, 0), ("LME", 8, 8), ("LMA", 10, 10), ("NXE", 11, 11), ("SVME", 12, 12), ("FFXSR", 14, 14),
    ]

    /// The 128-bit register type: the same bits seen as vectors of floats and integers.
    private static let vectorTypes = """
          <vector id="v4f" type="ieee_single" count="4"/>
          <vector id="v2d" type="ieee_double" count="2"/>
          <vector id="v16i8" type="int8" count="16"/>
          <vector id="v8i16" type="int16" count="8"/>
          <vector id="v4i32" type="int32" count="4"/>
          <vector id="v2i64" type="int64" count="2"/>
          <union id="vec128">
            <field name="v4_float" type="v4f"/>
            <field name="v2_double" type="v2d"/>
            <field name="v16_int8" type="v16i8"/>
            <field name="v8_int16" type="v8i16"/>
            <field name="v4_int32" type="v4i32"/>
            <field name="v2_int64" type="v2i64"/>
            <field name="uint128" type="uint128"/>
          </union>

        """
}
