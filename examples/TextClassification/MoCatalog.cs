using System.Text;

namespace TextClassification;

/// <summary>
/// Reads the translations of a GNU gettext catalog (<c>.mo</c>): a 28-byte header (magic 0x950412de in the file's byte
/// order, revision, string count N, offsets of the original and translation tables), then two tables of N (length,
/// offset) pairs. Hostile-file rules: the file is read only when it is at most <see cref="MaxBytes"/>, every table and
/// string must lie inside it, and only UTF-8 catalogs are used (the header entry's <c>charset=</c>).
/// </summary>
internal static class MoCatalog
{
    public const int MaxBytes = 8 << 20;
    private const uint Magic = 0x950412de;

    /// <summary>(msgid, first msgstr form) pairs of a UTF-8 catalog; empty for anything else or anything malformed.</summary>
    public static List<(string Id, string Translation)> Read(string path)
    {
        var result = new List<(string, string)>();
        var info = new FileInfo(path);
        if (!info.Exists || info.Length < 28 || info.Length > MaxBytes || info.LinkTarget is not null) return result;
        var bytes = File.ReadAllBytes(path);
        bool? littleEndian = ReadU32(bytes, 0, true) == Magic ? true : ReadU32(bytes, 0, false) == Magic ? false : null;
        if (littleEndian is not bool le) return result;
        uint U(long at) => at >= 0 && at + 4 <= bytes.Length ? ReadU32(bytes, (int)at, le) : throw new InvalidDataException("offset outside the file");
        var utf8 = new UTF8Encoding(false, throwOnInvalidBytes: true);
        try
        {
            long n = U(8), originals = U(12), translations = U(16);
            if (n > (bytes.Length - 28) / 16) return result;
            string Str(long table, long i)
            {
                long length = U(table + 8 * i), offset = U(table + 8 * i + 4);
                if (offset + length > bytes.Length) throw new InvalidDataException("string outside the file");
                return utf8.GetString(bytes, (int)offset, (int)length);
            }
            bool isUtf8 = false;
            for (long i = 0; i < n; i++)
            {
                string id = Str(originals, i), translation = Str(translations, i);
                if (id.Length == 0)
                {
                    isUtf8 = translation.Contains("charset=UTF-8", StringComparison.OrdinalIgnoreCase);
                    continue;
                }
                int nul = translation.IndexOf('\0');
                result.Add((id.Split('\0')[0], nul < 0 ? translation : translation[..nul]));
            }
            return isUtf8 ? result : [];
        }
        catch (Exception e) when (e is InvalidDataException or DecoderFallbackException or ArgumentException) { return []; }
    }

    private static uint ReadU32(byte[] b, int at, bool littleEndian) => littleEndian
        ? (uint)(b[at] | b[at + 1] << 8 | b[at + 2] << 16 | b[at + 3] << 24)
        : (uint)(b[at + 3] | b[at + 2] << 8 | b[at + 1] << 16 | b[at] << 24);
}
