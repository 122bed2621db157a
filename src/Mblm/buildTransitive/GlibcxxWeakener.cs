// Marks the GLIBCXX_3.4.32 version need of an ELF shared library as weak (VER_FLG_WEAK).
//
// Why: TorchSharp 0.107.0's libLibTorchSharp.so was linked against GCC 13's libstdc++ and declares a need for
// GLIBCXX_3.4.32 only because <iostream> emits an unreferenced symbol (std::ios_base_library_init); no relocation
// binds it. Debian 12 ships GLIBCXX_3.4.30, so the dynamic loader refuses the library. A weak version need makes
// the loader print a note instead. The change is two bytes and harmless on systems that have the version.
//
// This one file is compiled twice:
//   * into Mblm.dll (MBLM_RUNTIME defined): the runtime fallback that patches a consumer's copy before torch loads;
//   * by MSBuild's RoslynCodeTaskFactory (see Mblm.targets): the build-time task that patches every build/publish output.
using System;
using System.IO;
using System.Text;

namespace Mblm.Native
{
    /// <summary>Edits the version-need table (SHT_GNU_verneed) of a 64-bit little-endian ELF image in memory.</summary>
    internal static class ElfVersionNeeds
    {
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const ushort VerFlgWeak = 0x2;

        /// <summary>The version whose need is weakened.</summary>
        public const string TargetVersion = "GLIBCXX_3.4.32";

        /// <summary>Number of non-weak needs on <paramref name="version"/> in the image (0 when none or not ELF64 LE).</summary>
        public static int CountStrong(byte[] image, string version) => Visit(image, version, weaken: false);

        /// <summary>Sets VER_FLG_WEAK on every need of <paramref name="version"/>; returns how many entries changed.</summary>
        public static int Weaken(byte[] image, string version) => Visit(image, version, weaken: true);

        private static int Visit(byte[] d, string version, bool weaken)
        {
            // ELF64 little-endian only: magic, EI_CLASS = 2, EI_DATA = 1.
            if (d.Length < 64 || d[0] != 0x7f || d[1] != (byte)'E' || d[2] != (byte)'L' || d[3] != (byte)'F' || d[4] != 2 || d[5] != 1)
                return 0;
            long sectionTable = (long)BitConverter.ToUInt64(d, 0x28);
            int sectionSize = BitConverter.ToUInt16(d, 0x3A);
            int sectionCount = BitConverter.ToUInt16(d, 0x3C);
            if (sectionTable <= 0 || sectionTable + (long)sectionSize * sectionCount > d.Length) return 0;

            int hits = 0;
            for (int s = 0; s < sectionCount; s++)
            {
                int header = checked((int)(sectionTable + (long)s * sectionSize));
                if (BitConverter.ToUInt32(d, header + 4) != ShtGnuVerneed) continue;
                int tableAt = checked((int)BitConverter.ToUInt64(d, header + 0x18));
                int linkedStrings = (int)BitConverter.ToUInt32(d, header + 0x28);
                int needCount = (int)BitConverter.ToUInt32(d, header + 0x2C);
                int stringsHeader = checked((int)(sectionTable + (long)linkedStrings * sectionSize));
                int stringsAt = checked((int)BitConverter.ToUInt64(d, stringsHeader + 0x18));

                int need = tableAt; // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32
                for (int n = 0; n < needCount; n++)
                {
                    int auxCount = BitConverter.ToUInt16(d, need + 2);
                    int aux = need + (int)BitConverter.ToUInt32(d, need + 8);
                    for (int a = 0; a < auxCount; a++) // Elf64_Vernaux: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32
                    {
                        ushort flags = BitConverter.ToUInt16(d, aux + 4);
                        int nameAt = stringsAt + (int)BitConverter.ToUInt32(d, aux + 8);
                        int nameEnd = Array.IndexOf(d, (byte)0, nameAt);
                        if (nameEnd > nameAt && (flags & VerFlgWeak) == 0 &&
                            Encoding.ASCII.GetString(d, nameAt, nameEnd - nameAt) == version)
                        {
                            hits++;
                            if (weaken)
                            {
                                flags |= VerFlgWeak;
                                d[aux + 4] = (byte)flags;
                                d[aux + 5] = (byte)(flags >> 8);
                            }
                        }
                        uint nextAux = BitConverter.ToUInt32(d, aux + 12);
                        if (nextAux == 0) break;
                        aux += (int)nextAux;
                    }
                    uint nextNeed = BitConverter.ToUInt32(d, need + 12);
                    if (nextNeed == 0) break;
                    need += (int)nextNeed;
                }
            }
            return hits;
        }

        /// <summary>
        /// Weakens the need in the file at <paramref name="path"/> in place, atomically (temp file, then move), keeping the
        /// file's timestamp so incremental copies stay skipped. Returns true when the file was changed.
        /// </summary>
        public static bool WeakenFile(string path)
        {
            if (!File.Exists(path)) return false;
            byte[] image = File.ReadAllBytes(path);
            if (Weaken(image, TargetVersion) == 0) return false;
            DateTime stamp = File.GetLastWriteTimeUtc(path);
            string temp = path + ".mblm-patch-" + Guid.NewGuid().ToString("N").Substring(0, 8);
            File.WriteAllBytes(temp, image);
            File.SetLastWriteTimeUtc(temp, stamp);
            File.Replace(temp, path, null); // rename over the original: never a half-written library
            return true;
        }
    }
}

#if !MBLM_RUNTIME
/// <summary>MSBuild task: weakens the GLIBCXX_3.4.32 need in the given files (missing files are skipped).</summary>
public class WeakenGlibcxxRequirement : Microsoft.Build.Utilities.Task
{
    [Microsoft.Build.Framework.Required]
    public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();

    public override bool Execute()
    {
        foreach (var item in Files)
        {
            if (Mblm.Native.ElfVersionNeeds.WeakenFile(item.ItemSpec))
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High,
                    "Weakened " + Mblm.Native.ElfVersionNeeds.TargetVersion + " requirement in " + item.ItemSpec);
        }
        return true;
    }
}
#endif
