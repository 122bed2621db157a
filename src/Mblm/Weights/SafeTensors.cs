using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Mblm.Weights;

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header mapping each name to
/// <c>{dtype, shape, data_offsets}</c> (offsets relative to the data section; optional <c>__metadata__</c>), then the raw
/// little-endian tensor data, row-major. Writes are atomic (temporary file, then move).
/// </summary>
public static class SafeTensors
{
    private static readonly Dictionary<string, ScalarType> DTypes = new()
    {
        ["F64"] = ScalarType.Float64, ["F32"] = ScalarType.Float32, ["F16"] = ScalarType.Float16, ["BF16"] = ScalarType.BFloat16,
        ["I64"] = ScalarType.Int64, ["I32"] = ScalarType.Int32, ["I16"] = ScalarType.Int16, ["I8"] = ScalarType.Int8,
        ["U8"] = ScalarType.Byte, ["BOOL"] = ScalarType.Bool,
    };

    /// <summary>Bytes per element of each stored dtype.</summary>
    internal static int ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    /// <summary>Largest header accepted (bytes); the reference's files of 360 M parameters have headers of a few tens of KB.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>One entry of a safetensors header, validated.</summary>
    /// <param name="Name">Tensor name.</param>
    /// <param name="DType">Stored element type.</param>
    /// <param name="Shape">Shape (each dimension ≥ 0).</param>
    /// <param name="Begin">Start of its bytes in the data section.</param>
    /// <param name="End">End of its bytes in the data section.</param>
    public sealed record Entry(string Name, ScalarType DType, long[] Shape, long Begin, long End);

    /// <summary>Loads every tensor of the file (CPU tensors). Errors name the file and the offending entry.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        if (Directory.Exists(path)) throw new MblmFormatException(path, null, "is a directory, not a safetensors file");
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file '{path}' does not exist", path);
        using var stream = File.OpenRead(path);
        return Load(stream, path);
    }

    /// <summary>
    /// Loads every tensor from a stream; <paramref name="name"/> is used in error messages. <paramref name="length"/> is the
    /// number of bytes the stream holds from its position (the stream's own length when it can seek): the header is checked
    /// against it — known dtypes, shapes whose byte counts equal their offsets, entries that tile the data section without
    /// overlap or gaps — and the total against <see cref="Limits.MemoryBudgetBytes"/> before any tensor is allocated.
    /// Tensor bytes are read straight into tensor memory (no second copy). Throws <see cref="MblmFormatException"/>.
    /// </summary>
    public static Dictionary<string, Tensor> Load(Stream stream, string name = "stream", long? length = null)
    {
        length ??= stream.CanSeek ? stream.Length - stream.Position : null;
        var (entries, dataLength) = ReadHeader(stream, name, length);
        Limits.RequireMemory(dataLength, () => $"the {entries.Count} tensors", m => new MblmFormatException(name, null, m));
        var result = new Dictionary<string, Tensor>();
        try
        {
            foreach (var e in entries)
            {
                var tensor = empty(e.Shape, e.DType);
                result[e.Name] = tensor;
                ReadInto(stream, tensor, e.End - e.Begin, name, e.Name);
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>
    /// Reads and validates the header (without reading tensor data): entries in data order and the data section's length.
    /// </summary>
    public static (IReadOnlyList<Entry> Entries, long DataLength) ReadHeader(Stream stream, string name, long? length)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
        Span<byte> lengthBytes = stackalloc byte[8];
        if (ReadAtMost(stream, lengthBytes) < 8)
            throw new MblmFormatException(name, null, $"is not a safetensors file: {(length is 0 ? "it is empty" : "it ends before its 8-byte header length")}");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        long limit = Math.Min(MaxHeaderBytes, length is long l ? l - 8 : long.MaxValue);
        if (headerLength == 0 || headerLength > (ulong)Math.Max(limit, 0))
            throw new MblmFormatException(name, null, $"is not a safetensors file: it claims a {headerLength}-byte header, " +
                (length is long total && headerLength > (ulong)Math.Max(total - 8, 0) ? $"but the file holds {total} bytes" : $"the limit is {MaxHeaderBytes}"));
        var headerBytes = new byte[headerLength];
        if (ReadAtMost(stream, headerBytes) < headerBytes.Length)
            throw new MblmFormatException(name, null, $"is truncated: it ends inside its {headerLength}-byte header");
        // System.Text.Json checks UTF-8 only when a string is read (an InvalidOperationException then): check it first.
        // (Fuzz seed 20261204, safetensors #45: bit flips inside a tensor name.)
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
            throw new MblmFormatException(name, null, "the safetensors header is not valid UTF-8 text");
        JsonObject header;
        try
        {
            header = JsonNode.Parse(headerBytes, documentOptions: new JsonDocumentOptions { MaxDepth = Limits.MaxNestingDepth }) as JsonObject
                     ?? throw new MblmFormatException(name, null, "the safetensors header must be a JSON object");
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            throw new MblmFormatException(name, null, $"the safetensors header is not valid JSON: {e.Message}", e);
        }

        var entries = new List<Entry>();
        foreach (var (tensorName, node) in header)
        {
            if (tensorName == "__metadata__")
            {
                if (node is not (null or JsonObject)) throw new MblmFormatException(name, tensorName, "must be an object of strings");
                continue;
            }
            entries.Add(ReadEntry(name, tensorName, node));
        }
        entries.Sort((a, b) => a.Begin.CompareTo(b.Begin));
        long position = 0;
        foreach (var e in entries)
        {
            if (e.Begin < position) throw new MblmFormatException(name, e.Name, $"its bytes [{e.Begin}, {e.End}) overlap the previous tensor's, which end at {position}");
            if (e.Begin > position) throw new MblmFormatException(name, e.Name, $"its bytes start at {e.Begin}, leaving a gap after the previous tensor's end at {position}");
            position = e.End;
        }
        if (length is long total2 && position != total2 - 8 - (long)headerLength)
            throw new MblmFormatException(name, null, position > total2 - 8 - (long)headerLength
                ? $"is truncated: its tensors need {position} data bytes, the file holds {Math.Max(total2 - 8 - (long)headerLength, 0)}"
                : $"has {total2 - 8 - (long)headerLength - position} bytes after its last tensor");
        return (entries, position);
    }

    private static Entry ReadEntry(string file, string tensorName, JsonNode? node)
    {
        MblmFormatException Bad(string problem) => new(file, tensorName, problem);
        if (node is not JsonObject info) throw Bad("must be an object with dtype, shape and data_offsets");
        foreach (var key in info.Select(kv => kv.Key))
            if (key is not ("dtype" or "shape" or "data_offsets")) throw Bad($"has an unknown field '{key}' (expected dtype, shape, data_offsets)");
        if (info["dtype"] is not JsonValue dv || !dv.TryGetValue(out string? dtypeName))
            throw Bad("needs a string 'dtype' (F32, BF16, …)");
        if (!DTypes.TryGetValue(dtypeName, out var dtype)) throw Bad($"has unsupported dtype '{dtypeName}' (supported: {string.Join(", ", DTypes.Keys)})");
        long[] shape = Longs(info["shape"], "shape", 0, 16) ?? throw Bad("needs 'shape': a list of at most 16 non-negative integers");
        long[] offsets = Longs(info["data_offsets"], "data_offsets", 2, 2) ?? throw Bad("needs 'data_offsets': [begin, end], non-negative integers");
        if (offsets[1] < offsets[0]) throw Bad($"has data_offsets [{offsets[0]}, {offsets[1]}]: end before begin");
        long bytes;
        try
        {
            long elements = 1;
            foreach (long d in shape) elements = checked(elements * d);
            bytes = checked(elements * ElementSize(dtype));
        }
        catch (OverflowException) { throw Bad($"shape [{string.Join(", ", shape)}] has more elements than any file can hold"); }
        if (offsets[1] - offsets[0] != bytes)
            throw Bad($"has {offsets[1] - offsets[0]} data bytes, but shape [{string.Join(", ", shape)}] of {dtypeName} needs {bytes}");
        return new Entry(tensorName, dtype, shape, offsets[0], offsets[1]);
    }

    // A JSON array of non-negative integers with count in [min, max], or null.
    private static long[]? Longs(JsonNode? node, string key, int min, int max)
    {
        if (node is not JsonArray array || array.Count < min || array.Count > max) return null;
        var result = new long[array.Count];
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonValue v) return null;
            if (v.TryGetValue(out long x) && x >= 0) { result[i] = x; continue; }
            if (v.TryGetValue(out double d) && d >= 0 && d == Math.Floor(d) && d < 9e18) { result[i] = (long)d; continue; }
            return null;
        }
        return result;
    }

    internal static int ReadAtMost(Stream stream, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    // The first byte of a contiguous CPU tensor (what TorchSharp's own data accessors call).
    [System.Runtime.InteropServices.DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);

    // Reads `bytes` bytes straight into the tensor's memory, in pieces of at most 64 MiB.
    internal static unsafe void ReadInto(Stream stream, Tensor tensor, long bytes, string file, string tensorName)
    {
        if (bytes == 0) return;
        byte* start = (byte*)THSTensor_data(tensor.Handle);
        if (start == null) throw new InvalidOperationException("a tensor without CPU memory");
        for (long done = 0; done < bytes;)
        {
            int piece = (int)Math.Min(bytes - done, 64L << 20);
            int n = ReadAtMost(stream, new Span<byte>(start + done, piece));
            if (n < piece) throw new MblmFormatException(file, tensorName, $"is truncated: the file ends {bytes - done - n} bytes before this tensor's end");
            done += n;
        }
    }

    /// <summary>Writes the tensors (any device; stored in their dtype) to <paramref name="path"/> atomically, in name order.</summary>
    public static void Save(IReadOnlyDictionary<string, Tensor> tensors, string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var stream = File.Create(temp)) Save(tensors, stream, metadata);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Writes the tensors to a stream.</summary>
    public static void Save(IReadOnlyDictionary<string, Tensor> tensors, Stream stream, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        var meta = new JsonObject { ["format"] = "pt" };
        if (metadata is not null) foreach (var (k, v) in metadata) meta[k] = v;
        header["__metadata__"] = meta;
        var cpu = new List<Tensor>();
        long offset = 0;
        foreach (string name in names)
        {
            var t = tensors[name].detach().cpu().contiguous();
            cpu.Add(t);
            long bytes = t.NumberOfElements * t.ElementSize;
            header[name] = new JsonObject
            {
                ["dtype"] = DTypes.First(kv => kv.Value == t.dtype).Key,
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;
        var headerBytes = new byte[padded];
        Array.Fill(headerBytes, (byte)' ');
        json.CopyTo(headerBytes, 0);
        Span<byte> lengthBytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(lengthBytes, (ulong)padded);
        stream.Write(lengthBytes);
        stream.Write(headerBytes);
        foreach (var t in cpu)
        {
            stream.Write(t.bytes);
            t.Dispose();
        }
    }
}
