using System.Buffers.Binary;

namespace Mblm;

/// <summary>
/// Reads what a zip file's end records claim — entry count and central-directory size (zip64 included) — so that a file
/// claiming too many entries, or a directory too large, is refused before <c>ZipArchive</c> parses the whole directory
/// into memory.
/// </summary>
internal static class ZipDirectory
{
    /// <summary>Largest central directory accepted (bytes): room for 10,000 entries with names of 1.6 KB.</summary>
    public const long MaxDirectoryBytes = 16L << 20;

    /// <summary>
    /// Throws <see cref="MblmFormatException"/> (naming <paramref name="file"/> and <paramref name="entry"/>) when the end
    /// records claim more than <paramref name="maxEntries"/> entries or a directory over <see cref="MaxDirectoryBytes"/>.
    /// Streams that are not zips pass through: <c>ZipArchive</c> reports them.
    /// </summary>
    public static void Check(Stream stream, string file, string? entry, int maxEntries)
    {
        if (!stream.CanSeek || stream.Length < 22) return;
        long start = stream.Position;
        try
        {
            int tail = (int)Math.Min(stream.Length, 22 + 65_535);
            var buffer = new byte[tail];
            stream.Seek(-tail, SeekOrigin.End);
            stream.ReadExactly(buffer);
            int at = -1;
            for (int i = tail - 22; i >= 0; i--)
                if (BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(i)) == 0x06054b50) { at = i; break; }
            if (at < 0) return;
            ulong entries = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(at + 10));
            ulong size = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(at + 12));
            // zip64: the locator 20 bytes before the end record points at the zip64 end record.
            if ((entries == 0xFFFF || size == 0xFFFFFFFF) && at >= 20 && BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(at - 20)) == 0x07064b50)
            {
                ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(buffer.AsSpan(at - 20 + 8));
                if (offset > (ulong)stream.Length - 56) throw new MblmFormatException(file, entry, "is a damaged zip archive: its zip64 end record lies outside the file");
                var record = new byte[56];
                stream.Seek((long)offset, SeekOrigin.Begin);
                stream.ReadExactly(record);
                if (BinaryPrimitives.ReadUInt32LittleEndian(record) != 0x06064b50) throw new MblmFormatException(file, entry, "is a damaged zip archive: no zip64 end record where its locator points");
                entries = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(32));
                size = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(40));
            }
            if (entries > (ulong)maxEntries)
                throw new MblmFormatException(file, entry, $"claims {entries:N0} zip entries; at most {maxEntries:N0} are read");
            if (size > MaxDirectoryBytes)
                throw new MblmFormatException(file, entry,
                    $"claims a {Limits.FormatBytes((long)Math.Min(size, long.MaxValue))} zip directory; at most {Limits.FormatBytes(MaxDirectoryBytes)} is read");
        }
        finally
        {
            stream.Position = start;
        }
    }
}
