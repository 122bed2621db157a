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

    /// <summary>Loads every tensor of the file (CPU tensors). Errors name the file and the offending entry.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file '{path}' does not exist", path);
        using var stream = File.OpenRead(path);
        return Load(stream, path);
    }

    /// <summary>Loads every tensor from a stream; <paramref name="name"/> is used in error messages.</summary>
    public static Dictionary<string, Tensor> Load(Stream stream, string name = "stream")
    {
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength == 0 || headerLength > 100_000_000)
            throw new InvalidDataException($"'{name}' is not a safetensors file (header length {headerLength})");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        JsonObject header;
        try { header = JsonNode.Parse(headerBytes)!.AsObject(); }
        catch (JsonException e) { throw new InvalidDataException($"'{name}': safetensors header is not valid JSON: {e.Message}"); }

        var entries = header.Where(kv => kv.Key != "__metadata__")
            .Select(kv => (Name: kv.Key, Info: kv.Value!.AsObject()))
            .OrderBy(e => e.Info["data_offsets"]![0]!.GetValue<long>()).ToList();
        var result = new Dictionary<string, Tensor>();
        long position = 0;
        foreach (var (tensorName, info) in entries)
        {
            string dtypeName = info["dtype"]!.GetValue<string>();
            if (!DTypes.TryGetValue(dtypeName, out var dtype))
                throw new InvalidDataException($"'{name}': tensor '{tensorName}' has unsupported dtype {dtypeName}");
            long[] shape = info["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
            long begin = info["data_offsets"]![0]!.GetValue<long>(), end = info["data_offsets"]![1]!.GetValue<long>();
            if (begin < position) throw new InvalidDataException($"'{name}': tensor '{tensorName}' overlaps another tensor");
            if (begin > position) stream.Seek(begin - position, SeekOrigin.Current);
            var tensor = empty(shape, dtype);
            long bytes = tensor.NumberOfElements * tensor.ElementSize;
            if (end - begin != bytes)
                throw new InvalidDataException($"'{name}': tensor '{tensorName}' has {end - begin} data bytes, its shape and dtype need {bytes}");
            var buffer = new byte[bytes];
            stream.ReadExactly(buffer);
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
            tensor.bytes = buffer;
            result[tensorName] = tensor;
            position = end;
        }
        return result;
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
