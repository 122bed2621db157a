using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mblm.Fuzz.Core;

/// <summary>
/// A file to write: byte pieces and runs of one repeated byte. A run is never held in memory: on disk it is a hole (a
/// sparse file) when its byte is zero, and inside a zip it is a precompressed deflate stream (a zip bomb).
/// </summary>
internal sealed class FileImage
{
    public readonly record struct Piece(byte[]? Bytes, long RunLength, byte RunByte);

    public List<Piece> Pieces { get; } = [];

    public static FileImage Of(byte[] bytes) => new FileImage().Add(bytes);

    public FileImage Add(byte[] bytes)
    {
        if (bytes.Length > 0) Pieces.Add(new Piece(bytes, 0, 0));
        return this;
    }

    public FileImage AddRun(long length, byte value = 0)
    {
        if (length > 0) Pieces.Add(new Piece(null, length, value));
        return this;
    }

    public long Length => Pieces.Sum(p => p.Bytes?.LongLength ?? p.RunLength);

    public bool HasLargeRuns => Pieces.Any(p => p.Bytes is null && p.RunLength > (64L << 20));

    /// <summary>The bytes (for images without large runs).</summary>
    public byte[] ToArray()
    {
        if (HasLargeRuns) throw new InvalidOperationException("image too large to hold in memory");
        var ms = new MemoryStream();
        foreach (var p in Pieces)
        {
            if (p.Bytes is not null) ms.Write(p.Bytes);
            else for (long i = 0; i < p.RunLength; i++) ms.WriteByte(p.RunByte);
        }
        return ms.ToArray();
    }

    /// <summary>Writes the image: zero runs as holes, other runs written out in 1 MiB pieces.</summary>
    public void WriteTo(string path)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        var chunk = new byte[1 << 20];
        foreach (var p in Pieces)
        {
            if (p.Bytes is not null) { fs.Write(p.Bytes); continue; }
            if (p.RunByte == 0) { fs.Seek(p.RunLength, SeekOrigin.Current); continue; }
            Array.Fill(chunk, p.RunByte);
            for (long left = p.RunLength; left > 0; left -= chunk.Length) fs.Write(chunk, 0, (int)Math.Min(left, chunk.Length));
        }
        fs.SetLength(fs.Position);
    }
}

/// <summary>CRC-32 (zip's), with zlib's combination of two CRCs so that runs of gigabytes never need to be scanned.</summary>
internal static class Crc32
{
    private static readonly uint[] Table = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    public static uint Of(ReadOnlySpan<byte> data, uint crc = 0)
    {
        crc = ~crc;
        foreach (byte b in data) crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return ~crc;
    }

    private static uint Times(uint[] mat, uint vec)
    {
        uint sum = 0;
        for (int i = 0; vec != 0; i++, vec >>= 1) if ((vec & 1) != 0) sum ^= mat[i];
        return sum;
    }

    private static void Square(uint[] square, uint[] mat)
    {
        for (int n = 0; n < 32; n++) square[n] = Times(mat, mat[n]);
    }

    /// <summary>The CRC of A followed by B from their CRCs and B's length (zlib's crc32_combine).</summary>
    public static uint Combine(uint crc1, uint crc2, long len2)
    {
        if (len2 <= 0) return crc1;
        uint[] even = new uint[32], odd = new uint[32];
        odd[0] = 0xEDB88320u;
        uint row = 1;
        for (int n = 1; n < 32; n++, row <<= 1) odd[n] = row;
        Square(even, odd);
        Square(odd, even);
        do
        {
            Square(even, odd);
            if ((len2 & 1) != 0) crc1 = Times(even, crc1);
            len2 >>= 1;
            if (len2 == 0) break;
            Square(odd, even);
            if ((len2 & 1) != 0) crc1 = Times(odd, crc1);
            len2 >>= 1;
        } while (len2 != 0);
        return crc1 ^ crc2;
    }

    /// <summary>The CRC of <paramref name="length"/> copies of <paramref name="value"/>, by doubling.</summary>
    public static uint OfRun(byte value, long length)
    {
        uint result = 0, power = Of([value]);
        long powerLength = 1, done = 0;
        for (long n = length; n > 0; n >>= 1)
        {
            if ((n & 1) != 0) { result = Combine(result, power, powerLength); done += powerLength; }
            power = Combine(power, power, powerLength);
            powerLength *= 2;
        }
        return result;
    }
}

/// <summary>
/// Raw deflate data assembled from pieces: each piece compressed on its own and ended by a sync flush (byte-aligned,
/// not final), runs as repeats of a precompressed 1 MiB / 256 MiB run, then an empty final block. Back-references of a
/// piece never reach into another, so the concatenation inflates to the concatenated pieces.
/// </summary>
internal sealed class DeflatePayload
{
    public List<byte[]> Compressed { get; } = [];
    public long Length { get; private set; }
    public uint Crc { get; private set; }
    public long CompressedLength => Compressed.Sum(c => (long)c.Length);

    private static readonly Dictionary<(byte, int), byte[]> RunCache = new();

    private static byte[] Deflate(ReadOnlySpan<byte> data)
    {
        var ms = new MemoryStream();
        var ds = new DeflateStream(ms, CompressionLevel.Optimal, leaveOpen: true);
        ds.Write(data);
        ds.Flush();
        var bytes = ms.ToArray();
        ds.Dispose();
        return bytes;
    }

    private static byte[] Run(byte value, int length)
    {
        lock (RunCache)
        {
            if (RunCache.TryGetValue((value, length), out var cached)) return cached;
            var ms = new MemoryStream();
            var ds = new DeflateStream(ms, CompressionLevel.Optimal, leaveOpen: true);
            var chunk = new byte[1 << 20];
            Array.Fill(chunk, value);
            for (int left = length; left > 0; left -= chunk.Length) ds.Write(chunk, 0, Math.Min(left, chunk.Length));
            ds.Flush();
            var bytes = ms.ToArray();
            ds.Dispose();
            return RunCache[(value, length)] = bytes;
        }
    }

    public static DeflatePayload Of(FileImage image)
    {
        var p = new DeflatePayload();
        foreach (var piece in image.Pieces)
        {
            if (piece.Bytes is not null)
            {
                p.Compressed.Add(Deflate(piece.Bytes));
                p.Crc = Crc32.Combine(p.Crc, Crc32.Of(piece.Bytes), piece.Bytes.Length);
                p.Length += piece.Bytes.Length;
                continue;
            }
            const int Big = 256 << 20, Small = 1 << 20;
            long left = piece.RunLength;
            for (; left >= Big; left -= Big) p.Compressed.Add(Run(piece.RunByte, Big));
            for (; left >= Small; left -= Small) p.Compressed.Add(Run(piece.RunByte, Small));
            if (left > 0) p.Compressed.Add(Run(piece.RunByte, (int)left));
            p.Crc = Crc32.Combine(p.Crc, Crc32.OfRun(piece.RunByte, piece.RunLength), piece.RunLength);
            p.Length += piece.RunLength;
        }
        p.Compressed.Add([0x03, 0x00]); // final empty block (fixed Huffman, end of block)
        return p;
    }
}

/// <summary>One entry as <see cref="ZipWriter"/> writes it, with every header field open to lies.</summary>
internal sealed class ZipEntrySpec
{
    public required string Name { get; set; }
    /// <summary>The name in the central directory, when it differs from the local header's.</summary>
    public string? CentralName { get; set; }
    public required FileImage Content { get; set; }
    /// <summary>0 stored, 8 deflate; anything else is written as declared over deflate data.</summary>
    public ushort Method { get; set; } = 8;
    public uint? CrcOverride { get; set; }
    public long? SizeOverride { get; set; }
    public long? CompressedSizeOverride { get; set; }
    public ushort Flags { get; set; }
    public bool InCentralDirectory { get; set; } = true;

    public ZipEntrySpec Copy() => (ZipEntrySpec)MemberwiseClone();
}

/// <summary>Lies in the end-of-central-directory record.</summary>
internal sealed class ZipTweaks
{
    public int? EntryCount { get; set; }
    public long CentralOffsetDelta { get; set; }
    public byte[] Comment { get; set; } = [];
    public int TruncateEnd { get; set; }
}

/// <summary>A minimal zip writer (no zip64: entries stay below 4 GiB) that writes whatever it is told.</summary>
internal static class ZipWriter
{
    // 2020-01-01 00:00 in DOS time: fixed, so that a mutated file depends on the seed and the mutation only.
    private const ushort DosTime = 0, DosDate = ((2020 - 1980) << 9) | (1 << 5) | 1;

    public static void Write(Stream output, IReadOnlyList<ZipEntrySpec> entries, ZipTweaks? tweaks = null)
    {
        tweaks ??= new ZipTweaks();
        var w = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        var central = new MemoryStream();
        var cw = new BinaryWriter(central);
        int count = 0;
        long start = output.Position;
        foreach (var e in entries)
        {
            long offset = output.Position - start;
            byte[] name = Encoding.UTF8.GetBytes(e.Name);
            ushort flags = (ushort)(e.Flags | (name.Any(b => b >= 0x80) ? 0x800 : 0));
            uint crc;
            long size, csize;
            List<byte[]> data;
            if (e.Method == 0 && !e.Content.HasLargeRuns)
            {
                var bytes = e.Content.ToArray();
                data = [bytes];
                (crc, size, csize) = (Crc32.Of(bytes), bytes.Length, bytes.Length);
            }
            else
            {
                var payload = DeflatePayload.Of(e.Content);
                data = payload.Compressed;
                (crc, size, csize) = (payload.Crc, payload.Length, payload.CompressedLength);
            }
            crc = e.CrcOverride ?? crc;
            uint declaredSize = (uint)Math.Min(e.SizeOverride ?? size, uint.MaxValue);
            uint declaredCSize = (uint)Math.Min(e.CompressedSizeOverride ?? csize, uint.MaxValue);
            ushort method = e.Method == 0 && e.Content.HasLargeRuns ? (ushort)8 : e.Method;
            w.Write(0x04034b50u);
            w.Write((ushort)20); w.Write(flags); w.Write(method); w.Write(DosTime); w.Write(DosDate);
            w.Write(crc); w.Write(declaredCSize); w.Write(declaredSize);
            w.Write((ushort)name.Length); w.Write((ushort)0);
            w.Write(name);
            foreach (var piece in data) w.Write(piece);
            if (!e.InCentralDirectory) continue;
            byte[] cname = Encoding.UTF8.GetBytes(e.CentralName ?? e.Name);
            cw.Write(0x02014b50u);
            cw.Write((ushort)20); cw.Write((ushort)20); cw.Write(flags); cw.Write(method); cw.Write(DosTime); cw.Write(DosDate);
            cw.Write(crc); cw.Write(declaredCSize); cw.Write(declaredSize);
            cw.Write((ushort)cname.Length); cw.Write((ushort)0); cw.Write((ushort)0);
            cw.Write((ushort)0); cw.Write((ushort)0); cw.Write(0u);
            cw.Write((uint)offset);
            cw.Write(cname);
            count++;
        }
        w.Flush();
        long cdOffset = output.Position - start;
        cw.Flush();
        var eocd = new MemoryStream();
        var ew = new BinaryWriter(eocd);
        ew.Write(0x06054b50u);
        ew.Write((ushort)0); ew.Write((ushort)0);
        ushort n = (ushort)Math.Clamp(tweaks.EntryCount ?? count, 0, ushort.MaxValue);
        ew.Write(n); ew.Write(n);
        ew.Write((uint)central.Length);
        ew.Write((uint)Math.Clamp(cdOffset + tweaks.CentralOffsetDelta, 0, uint.MaxValue));
        ew.Write((ushort)Math.Min(tweaks.Comment.Length, ushort.MaxValue));
        ew.Write(tweaks.Comment.AsSpan(0, Math.Min(tweaks.Comment.Length, ushort.MaxValue)));
        ew.Flush();
        output.Write(central.ToArray());
        var end = eocd.ToArray();
        output.Write(end, 0, Math.Max(0, end.Length - tweaks.TruncateEnd));
    }

    public static byte[] ToBytes(IReadOnlyList<ZipEntrySpec> entries, ZipTweaks? tweaks = null)
    {
        var ms = new MemoryStream();
        Write(ms, entries, tweaks);
        return ms.ToArray();
    }

    /// <summary>The entries of a zip (name, content, stored or deflated) in order.</summary>
    private const long MaxReadEntryBytes = 64L << 20;

    public static List<ZipEntrySpec> Read(byte[] zip)
    {
        using var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read);
        var list = new List<ZipEntrySpec>();
        foreach (var e in archive.Entries)
        {
            // An entry an earlier mutation turned into a bomb is not inflated into memory (seed 20261204, pipeline #2618: a
            // second mutation of an inner zip read its 3.75 GiB entry): such a zip is treated as unreadable (byte-level damage).
            if (e.Length > MaxReadEntryBytes) throw new InvalidDataException($"entry '{e.FullName}' inflates to {e.Length:N0} bytes");
            var ms = new MemoryStream();
            using (var s = e.Open())
            {
                var buffer = new byte[81920];
                int n;
                while ((n = s.Read(buffer)) > 0)
                {
                    if (ms.Length + n > MaxReadEntryBytes) throw new InvalidDataException($"entry '{e.FullName}' inflates past {MaxReadEntryBytes:N0} bytes");
                    ms.Write(buffer, 0, n);
                }
            }
            list.Add(new ZipEntrySpec
            {
                Name = e.FullName, Content = FileImage.Of(ms.ToArray()),
                Method = (ushort)(e.CompressedLength == e.Length && e.Length > 0 ? 0 : 8),
            });
        }
        return list;
    }
}

/// <summary>
/// Zip-level mutations: entries replaced (by a format-aware mutation of their content), removed, duplicated, renamed
/// (path traversal, absolute, backslashes), added, inflated to gigabytes (bombs), headers that lie about sizes, CRC and
/// method, a central directory that lies, and byte-level damage of the whole file.
/// </summary>
internal static class ZipMutator
{
    public static readonly string[] HostileNames =
    [
        "../../../../tmp/mblm-fuzz-escape.json", "/etc/mblm-fuzz-abs.json", "..\\..\\evil.json", "stages/000/../../../evil.json",
        "C:/windows/evil.json", "stages//000//stage.json", "./mblm-pipeline.json", "stages/000/./model.json", "a\u0000b",
        "STAGES/000/MODEL.JSON", "mblm-pipeline.json ", " mblm-pipeline.json", "stages/000/", "stages/", new string('n', 60_000),
    ];

    /// <summary>Long runs for bombs: just above the budget, above a MemoryStream's limit, and near 4 GiB.</summary>
    public static readonly long[] BombSizes = [(1L << 30) + (1L << 28), (2L << 30) + (1L << 28), (4L << 30) - (1L << 28)];

    public sealed class Result
    {
        public required List<ZipEntrySpec> Entries { get; init; }
        public ZipTweaks Tweaks { get; init; } = new();
        /// <summary>Set when the whole written file is then damaged byte-wise (never with bombs).</summary>
        public bool ByteLevel { get; init; }
    }

    public static Result Mutate(List<ZipEntrySpec> seed, FuzzRng rng, MutationLog log, string what,
        Func<ZipEntrySpec, FuzzRng, MutationLog, FileImage> content, int ops = 1)
    {
        var entries = seed.Select(e => e.Copy()).ToList();
        var tweaks = new ZipTweaks();
        bool byteLevel = false;
        for (int op = 0; op < ops; op++)
        {
            int i = rng.Int(entries.Count);
            var e = entries[i];
            switch (rng.Weighted(40, 7, 7, 7, 5, 7, 8, 5, 3, 11))
            {
                case 0:
                    e.Content = content(e, rng, log);
                    break;
                case 1:
                    entries.RemoveAt(i);
                    log.Add($"{what}: entry '{e.Name}' removed");
                    break;
                case 2:
                {
                    var dup = e.Copy();
                    if (rng.Chance(0.5)) dup.Content = content(dup, rng, log);
                    entries.Insert(rng.Chance(0.5) ? i + 1 : rng.Chance(0.5) ? 0 : entries.Count, dup);
                    log.Add($"{what}: entry '{e.Name}' duplicated");
                    break;
                }
                case 3:
                {
                    string to = rng.Chance(0.5) ? rng.Pick(HostileNames) : rng.Pick(new[] { e.Name.ToUpperInvariant(), e.Name.Replace('/', '\\'), "/" + e.Name, "../" + e.Name, e.Name + "/" });
                    if (rng.Chance(0.3)) { e.CentralName = to; log.Add($"{what}: entry '{e.Name}' named '{JsonMutator.Short(to)}' in the central directory only"); }
                    else { e.Name = to; log.Add($"{what}: entry renamed to '{JsonMutator.Short(to)}'"); }
                    break;
                }
                case 4:
                {
                    int n = rng.Pick(new[] { 1, 1, 10, 20_000 });
                    string baseName = rng.Pick(HostileNames.Append("stages/007/stage.json").Append("extra.bin").ToArray());
                    // Many entries with the 60,000-character hostile name took the harness past 8 GiB making the file
                    // (seed 20261204, pipeline #5945, pth #9727): in bulk, names are cut to 1,000 characters (20 MB in all).
                    if (n > 10 && baseName.Length > 1000) baseName = baseName[..1000];
                    for (int k = 0; k < n; k++)
                        entries.Insert(rng.Int(entries.Count + 1), new ZipEntrySpec { Name = n == 1 ? baseName : $"{baseName}.{k}", Content = FileImage.Of(Encoding.UTF8.GetBytes("{}")) });
                    log.Add($"{what}: {n} entr{(n == 1 ? "y" : "ies")} '{JsonMutator.Short(baseName)}' added");
                    break;
                }
                case 5:
                {
                    long size = rng.Pick(BombSizes);
                    byte fill = rng.Chance(0.5) ? (byte)0x20 : (byte)0;
                    var image = new FileImage();
                    foreach (var p in e.Content.Pieces) if (p.Bytes is not null) image.Add(p.Bytes);
                    e.Content = image.AddRun(size, fill);
                    e.Method = 8;
                    log.Add($"{what}: entry '{e.Name}' inflates to {size >> 20} MiB (its content, then {(fill == 0 ? "zeros" : "spaces")})");
                    break;
                }
                case 6:
                {
                    switch (rng.Int(5))
                    {
                        case 0: e.SizeOverride = rng.Pick(new long[] { 0, 1, 100, uint.MaxValue, (long)int.MaxValue
                            + 1 }); log.Add($"{what}: entry '{e.Name}' declares uncompressed size {e.SizeOverride}"); break;
                        case 1: e.CompressedSizeOverride = rng.Pick(new long[] { 0, 1, uint.MaxValue,
                            1 << 20 }); log.Add($"{what}: entry '{e.Name}' declares compressed size {e.CompressedSizeOverride}"); break;
                        case 2: e.CrcOverride = (uint)rng.Next(); log.Add($"{what}: entry '{e.Name}' has a wrong CRC"); break;
                        case 3: e.Method = rng.Pick(new ushort[] { 1, 9, 12, 14, 99, 0xFFFF }); log.Add($"{what}: entry '{e.Name}' declares compression method {e.Method}"); break;
                        default: e.Flags = rng.Pick(new ushort[] { 1, 8, 0x40, 0xFFFF }); log.Add($"{what}: entry '{e.Name}' has flags 0x{e.Flags:X}"); break;
                    }
                    break;
                }
                case 7:
                {
                    switch (rng.Int(4))
                    {
                        case 0: tweaks.EntryCount = rng.Pick(new[] { 0, 1, entries.Count + 1, ushort.MaxValue }); log.Add($"{what}: end record claims {tweaks.EntryCount} entries"); break;
                        case 1: tweaks.CentralOffsetDelta = rng.Pick(new long[] { -1, 1, -100, 1 << 20,
                            -(1L << 40) }); log.Add($"{what}: central directory offset moved by {tweaks.CentralOffsetDelta}"); break;
                        case 2: tweaks.Comment = Encoding.ASCII.GetBytes(new string('c', rng.Pick(new[] { 10,
                            ushort.MaxValue }))); log.Add($"{what}: archive comment of {tweaks.Comment.Length} bytes"); break;
                        default: tweaks.TruncateEnd = 1 + rng.Int(21); log.Add($"{what}: end record cut by {tweaks.TruncateEnd} bytes"); break;
                    }
                    break;
                }
                case 8:
                {
                    if (rng.Chance(0.5)) { e.InCentralDirectory = false; log.Add($"{what}: entry '{e.Name}' left out of the central directory"); }
                    else
                    {
                        var shuffled = entries.OrderBy(_ => rng.Next()).ToList();
                        entries.Clear();
                        entries.AddRange(shuffled);
                        log.Add($"{what}: entries reordered");
                    }
                    break;
                }
                default:
                    byteLevel = true;
                    break;
            }
        }
        if (byteLevel && entries.Any(x => x.Content.HasLargeRuns)) byteLevel = false;
        return new Result { Entries = entries, Tweaks = tweaks, ByteLevel = byteLevel };
    }

    /// <summary>Writes a mutation result to a file; byte-level damage of the whole file when asked for.</summary>
    public static void WriteTo(Result r, string path, FuzzRng rng, MutationLog log, string what)
    {
        if (r.ByteLevel)
        {
            var bytes = ZipWriter.ToBytes(r.Entries, r.Tweaks);
            File.WriteAllBytes(path, ByteMutator.Mutate(bytes, rng, log, what));
            return;
        }
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        ZipWriter.Write(fs, r.Entries, r.Tweaks);
    }

    /// <summary>An inner zip (an ML.NET model file inside the pipeline) mutated the same way, its entries byte-wise.</summary>
    public static FileImage MutateInner(byte[] zip, FuzzRng rng, MutationLog log, string what)
    {
        List<ZipEntrySpec> entries;
        try { entries = ZipWriter.Read(zip); }
        catch (InvalidDataException) { return FileImage.Of(ByteMutator.Mutate(zip, rng, log, what)); }
        var r = Mutate(entries, rng, log, what, (e, g, l) => FileImage.Of(ByteMutator.Mutate(e.Content.ToArray(), g, l, $"{what}:{e.Name}")));
        if (r.Entries.Any(x => x.Content.HasLargeRuns))
        {
            var ms = new MemoryStream();
            ZipWriter.Write(ms, r.Entries, r.Tweaks);
            return FileImage.Of(ms.ToArray());
        }
        var bytes = ZipWriter.ToBytes(r.Entries, r.Tweaks);
        return FileImage.Of(r.ByteLevel ? ByteMutator.Mutate(bytes, rng, log, what) : bytes);
    }
}

/// <summary>
/// Safetensors mutations: the header-length field, the header's JSON (dtype, shape, offsets, metadata, duplicate names),
/// consistent rewrites (a tensor removed, added, renamed, reshaped, retyped, poisoned with NaN, or enlarged to gigabytes
/// with matching offsets and a sparse data section), and damage to the data section.
/// </summary>
internal static class SafeTensorsMutator
{
    public sealed record Tensor(string Name, string DType, long[] Shape, byte[] Data);

    /// <summary>The parsed seed; <see cref="Metadata"/> is the raw JSON of <c>__metadata__</c>.</summary>
    public sealed record Parsed(string? Metadata, List<Tensor> Tensors, byte[] HeaderBytes, byte[] DataSection);

    private static readonly string[] DTypeNames = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "U16", "U32", "U64", "C64", "Q4", "f32", ""];

    public static int ElementSize(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" or "C64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        _ => 1,
    };

    public static Parsed Parse(byte[] file)
    {
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        var header = file[8..(int)(8 + n)];
        var data = file[(int)(8 + n)..];
        var obj = JsonNode.Parse(header)!.AsObject();
        var tensors = new List<Tensor>();
        string? meta = null;
        foreach (var (name, node) in obj)
        {
            if (name == "__metadata__") { meta = node?.ToJsonString(); continue; }
            var o = node!.AsObject();
            var off = o["data_offsets"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
            tensors.Add(new Tensor(name, o["dtype"]!.GetValue<string>(), o["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray(),
                data[(int)off[0]..(int)off[1]]));
        }
        return new Parsed(meta, tensors, header, data);
    }

    private static string HeaderJson(string? meta, IEnumerable<(string Name, string DType, long[] Shape, long Begin, long End)> entries)
    {
        var parts = new List<string>();
        if (meta is not null) parts.Add("\"__metadata__\": " + meta);
        foreach (var e in entries)
            parts.Add($"{JsonSerializer.Serialize(e.Name)}: {{\"dtype\": {JsonSerializer.Serialize(e.DType)}, \"shape\": [{string.Join(", ", e.Shape)}], \"data_offsets\": [{e.Begin}, {e.End}]}}");
        return "{" + string.Join(", ", parts) + "}";
    }

    private static byte[] WithLength(byte[] header, ulong? declared = null)
    {
        var b = new byte[8 + header.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(b, declared ?? (ulong)header.Length);
        header.CopyTo(b, 8);
        return b;
    }

    private static byte[] Pad(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        int padded = (bytes.Length + 7) / 8 * 8;
        var result = new byte[padded];
        Array.Fill(result, (byte)' ');
        bytes.CopyTo(result, 0);
        return result;
    }

    /// <summary>A consistent file: offsets recomputed in list order; a tensor's data may be a run (huge tensors).</summary>
    public static FileImage Build(string? meta, List<(string Name, string DType, long[] Shape, byte[]? Data, long RunLength)> tensors)
    {
        long offset = 0;
        var entries = new List<(string, string, long[], long, long)>();
        foreach (var t in tensors)
        {
            long len = t.Data?.LongLength ?? t.RunLength;
            entries.Add((t.Name, t.DType, t.Shape, offset, offset + len));
            offset += len;
        }
        var image = FileImage.Of(WithLength(Pad(HeaderJson(meta, entries))));
        foreach (var t in tensors)
        {
            if (t.Data is not null) image.Add(t.Data);
            else image.AddRun(t.RunLength);
        }
        return image;
    }

    /// <param name="maxDeclaredBytes">Bound on the data a mutation may declare in total: a file on disk can hold terabytes
    /// as a hole, an entry inside a zip cannot (it is compressed), so zip entries pass what a zip bomb uses.</param>
    public static FileImage Mutate(byte[] seed, FuzzRng rng, MutationLog log, string what, long maxDeclaredBytes = long.MaxValue)
    {
        var p = Parse(seed);
        var list = p.Tensors.Select(t => (t.Name, t.DType, t.Shape, (byte[]?)t.Data, 0L)).ToList();
        int i = rng.Int(list.Count);
        var (name, dtype, shape, data, _) = list[i];
        switch (rng.Weighted(8, 30, 5, 5, 5, 6, 7, 4, 7, 5, 6, 7, 4))
        {
            case 0:
            {
                long fileLen = seed.Length;
                long v = rng.Pick(new[] { 0, 1, 7, p.HeaderBytes.Length - 1, p.HeaderBytes.Length + 1, fileLen, fileLen - 8, 100_000_000, 100_000_001, 1L << 32, long.MaxValue, long.MinValue, -1 });
                var b = (byte[])seed.Clone();
                BinaryPrimitives.WriteInt64LittleEndian(b, v);
                log.Add($"{what}: header length field = {(ulong)v}");
                return FileImage.Of(b);
            }
            case 1:
            {
                var header = JsonMutator.Mutate(Encoding.UTF8.GetString(p.HeaderBytes).TrimEnd(' '), rng, log, what + " header", HeaderValue);
                bool pad = rng.Chance(0.8);
                if (pad) header = Pad(Encoding.UTF8.GetString(header));
                return FileImage.Of(WithLength(header)).Add(p.DataSection);
            }
            case 2:
                list.RemoveAt(i);
                log.Add($"{what}: tensor '{name}' removed (offsets consistent)");
                break;
            case 3:
            {
                var extraShape = rng.Pick(new[] { new long[] { 4 }, [0], [], [3, 0, 5], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] });
                long count = extraShape.Aggregate(1L, (a, x) => a * x);
                list.Insert(rng.Int(list.Count + 1), (rng.Pick(new[] { "extra.weight", name + ".extra", "", "__metadata__x", name.ToUpperInvariant() }), "F32", extraShape, new byte[count * 4], 0));
                log.Add($"{what}: an extra F32 tensor of shape [{string.Join(", ", extraShape)}] added");
                break;
            }
            case 4:
            {
                string to = rng.Chance(0.4) ? list[rng.Int(list.Count)].Name : rng.Pick(new[] { name + " ", name.ToUpperInvariant(), name.Replace('.', '/'), "../" + name, "" });
                list[i] = (to, dtype, shape, data, 0);
                log.Add($"{what}: tensor '{name}' renamed '{to}'");
                break;
            }
            case 5:
            {
                long count = shape.Aggregate(1L, (a, x) => a * x);
                long[] to = rng.Int(4) switch
                {
                    0 => [count],
                    1 => [1, .. shape],
                    2 => shape.Reverse().ToArray(),
                    _ => [.. shape, 1],
                };
                list[i] = (name, dtype, to, data, 0);
                log.Add($"{what}: tensor '{name}' reshaped [{string.Join(", ", shape)}] → [{string.Join(", ", to)}] (same bytes)");
                break;
            }
            case 6:
            {
                string to = rng.Pick(new[] { "F64", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL" });
                long count = shape.Aggregate(1L, (a, x) => a * x);
                var bytes = new byte[count * ElementSize(to)];
                for (int k = 0; k < bytes.Length; k++) bytes[k] = (byte)rng.Next();
                if (to == "BOOL") for (int k = 0; k < bytes.Length; k++) bytes[k] &= 1;
                list[i] = (name, to, shape, bytes, 0);
                log.Add($"{what}: tensor '{name}' stored as {to} (random bytes, consistent size)");
                break;
            }
            case 7:
            {
                var bytes = (byte[])data!.Clone();
                float v = rng.Pick(new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, 3e38f, 1e-45f });
                for (int k = 0; k + 4 <= bytes.Length; k += 4) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(k), v);
                list[i] = (name, dtype, shape, bytes, 0);
                log.Add($"{what}: tensor '{name}' filled with {v}");
                break;
            }
            case 8:
            {
                // A consistent file whose tensors need more memory than the budget, or just under it; the data is a hole.
                long bytes = rng.Pick(new[] { 900L << 20, (1L << 30) + 4096, 3L << 30, 16L << 30, 1L << 40 });
                int count = rng.Chance(0.3) ? 3 : 1;
                // Fuzz seed 4242, pipeline #868: 3 × 1 TiB inside a pipeline zip took the harness hours to compress.
                while (count * bytes > maxDeclaredBytes && count > 1) count--;
                if (bytes > maxDeclaredBytes) bytes = maxDeclaredBytes / 4 * 4;
                for (int k = 0; k < count; k++)
                {
                    int at = (i + k) % list.Count;
                    list[at] = (list[at].Name, "F32", [bytes / 4], null, bytes / 4 * 4);
                }
                log.Add($"{what}: {count} tensor(s) declared as F32 [{bytes / 4}] ({bytes >> 20} MiB each), offsets consistent, data sparse");
                break;
            }
            case 9:
            {
                var dupName = list[rng.Int(list.Count)].Name;
                list.Insert(rng.Int(list.Count + 1), (dupName, dtype, shape, data, 0));
                log.Add($"{what}: tensor name '{dupName}' appears twice in the header (offsets consistent)");
                break;
            }
            case 10:
            {
                string meta = rng.Int(6) switch
                {
                    0 => "{\"format\": 1, \"x\": [1, 2]}",
                    1 => "{\"a\": " + Interesting.Nested(rng.Pick(new[] { 62, 70, 100_000 }), true) + "}",
                    2 => "{\"big\": \"" + new string('m', 1 << 20) + "\"}",
                    3 => "{}",
                    4 => "{\"format\": \"pt\", \"format\": \"np\"}",
                    _ => rng.Pick(new[] { "[]", "\"pt\"", "null", "1" }),
                };
                log.Add($"{what}: __metadata__ = {JsonMutator.Short(meta)}");
                return Build(meta, list);
            }
            case 11:
            {
                var file = Build(p.Metadata, list).ToArray();
                int headerEnd = 8 + p.HeaderBytes.Length;
                switch (rng.Int(4))
                {
                    case 0:
                    {
                        int cut = headerEnd + rng.Int(Math.Max(1, file.Length - headerEnd));
                        log.Add($"{what}: data section cut at {cut} of {file.Length}");
                        return FileImage.Of(file[..cut]);
                    }
                    case 1:
                        log.Add($"{what}: data section extended");
                        return FileImage.Of(file).Add(new byte[rng.Pick(new[] { 1, 8, 4096 })]);
                    default:
                    {
                        var d = (byte[])file.Clone();
                        int flips = 1 + rng.Int(64);
                        for (int k = 0; k < flips; k++) d[headerEnd + rng.Int(d.Length - headerEnd)] ^= (byte)(1 << rng.Int(8));
                        log.Add($"{what}: {flips} bit flips in the data section");
                        return FileImage.Of(d);
                    }
                }
            }
            default:
                return FileImage.Of(ByteMutator.Mutate(seed, rng, log, what));
        }
        return Build(p.Metadata, list);
    }

    // Values for header positions: dtype names, shapes and offsets at the edges.
    private static string? HeaderValue(FuzzRng rng, string path)
    {
        if (rng.Chance(0.35)) return null;
        if (path.EndsWith("/dtype", StringComparison.Ordinal)) return JsonSerializer.Serialize(rng.Pick(DTypeNames));
        if (path.Contains("/shape", StringComparison.Ordinal) || path.Contains("/data_offsets", StringComparison.Ordinal))
            return rng.Chance(0.7) ? Interesting.Number(rng) : rng.Pick(new[]
            {
                "[]", "[0]", "[-1]", "[1, 2]", "[2147483648, 2147483648, 2147483648]", "[4611686018427387904, 4]",
                "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", "[1.5]", "[\"3\"]", "[null]", "[9223372036854775807, 9223372036854775807]",
            });
        return null;
    }
}
