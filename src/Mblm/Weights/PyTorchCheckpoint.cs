using System.Collections;
using System.IO.Compression;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Mblm.Weights;

/// <summary>What a PyTorch <c>.pth</c> file held: its tensors, and for a reference trainer checkpoint its loss.</summary>
/// <param name="Tensors">The state dict (CPU tensors, contiguous); the caller disposes them.</param>
/// <param name="IsTrainerCheckpoint">True for the reference trainer's layout <c>{"MODEL": state_dict, "LOSS": loss}</c>, false for a bare state dict.</param>
/// <param name="Loss">The checkpoint's <c>LOSS</c> when it is a number; null otherwise (bare state dicts, <c>None</c>).</param>
public sealed record PyTorchCheckpointContents(Dictionary<string, Tensor> Tensors, bool IsTrainerCheckpoint, double? Loss);

/// <summary>
/// Reads and writes PyTorch's <c>torch.save</c> zip format (<c>.pth</c>): the reference trainer's checkpoints
/// (<c>{"MODEL": state_dict, "LOSS": loss}</c>, as <c>mblm.utils.io.save_model_state</c> writes them) and bare state dicts.
/// <para>
/// Reading treats the file as hostile. The zip's end records are bounded (<see cref="MaxEntries"/>, directory size), the
/// pickle (<c>data.pkl</c>, at most <see cref="MaxPickleBytes"/>) is walked by <see cref="PickleGuard"/> — every global
/// must be on its allow-list — and only then unpickled, by TorchSharp.PyBridge (Razorvine.Pickle) in its descriptor mode,
/// which allocates no tensor. Each tensor's storage offset, shape and stride are then checked against its storage entry's
/// length, and the total against <see cref="Limits.MemoryBudgetBytes"/>, before any tensor memory is allocated.
/// Writing goes through PyBridge's pickler, atomically (temporary file, then move).
/// </para>
/// </summary>
public static class PyTorchCheckpoint
{
    /// <summary>Most zip entries read (a 360 M-parameter MBLM has about a thousand tensors).</summary>
    public const int MaxEntries = 10_000;

    /// <summary>Largest pickle (<c>data.pkl</c>) read: a state dict's pickle holds names and shapes (about 150 bytes per tensor).</summary>
    public const long MaxPickleBytes = 4L << 20;

    private const int MaxDims = 16;

    /// <summary>True when <paramref name="head"/> (a file's first bytes) starts a zip archive, the format of <c>torch.save</c> since PyTorch 1.6.</summary>
    public static bool IsZip(ReadOnlySpan<byte> head) => head.Length >= 4 && head[0] == 0x50 && head[1] == 0x4b && head[2] == 0x03 && head[3] == 0x04;

    /// <summary>
    /// True when <paramref name="head"/> starts PyTorch's legacy (pre-1.6) <c>torch.save</c> format: a bare pickle that
    /// opens with the integer magic number (<c>PROTO n, LONG1 10</c>).
    /// </summary>
    public static bool IsLegacyPickle(ReadOnlySpan<byte> head) => head.Length >= 4 && head[0] == 0x80 && head[1] <= 5 && head[2] == 0x8a && head[3] == 0x0a;

    /// <summary>Reads a <c>.pth</c> file; see <see cref="Load(Stream, string)"/>.</summary>
    public static PyTorchCheckpointContents Load(string path)
    {
        if (Directory.Exists(path)) throw new MblmFormatException(path, null, "is a directory, not a PyTorch checkpoint");
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint file '{path}' does not exist", path);
        using var stream = File.OpenRead(path);
        return Load(stream, path);
    }

    /// <summary>
    /// Reads a <c>torch.save</c> zip from a seekable stream; <paramref name="name"/> names it in errors. Throws
    /// <see cref="ForbiddenPickleGlobalException"/> for a global outside the allow-list and <see cref="MblmFormatException"/>
    /// (naming the file and the entry or tensor) for anything else that is not a state dict of supported tensors.
    /// </summary>
    public static PyTorchCheckpointContents Load(Stream stream, string name)
    {
        if (!stream.CanSeek) throw new ArgumentException("the stream must be seekable (a zip is read from its end)", nameof(stream));
        Span<byte> head = stackalloc byte[4];
        stream.Position = 0;
        if (!IsZip(head[..SafeTensors.ReadAtMost(stream, head)]))
            throw new MblmFormatException(name, null, "is not a PyTorch zip checkpoint (torch.save since PyTorch 1.6)");
        stream.Position = 0;
        ZipDirectory.Check(stream, name, null, MaxEntries);
        ZipArchive? archive = null;
        try
        {
            archive = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            _ = archive.Entries.Count; // the central directory is parsed here, on first use
        }
        catch (InvalidDataException e)
        {
            archive?.Dispose();
            throw new MblmFormatException(name, null, $"is a damaged zip archive: {e.Message}", e);
        }
        using (archive)
        {
            var pickleEntry = FindPickle(archive, name);
            PickleGuard.Check(ReadPickle(pickleEntry, name), name, pickleEntry.FullName);
            var root = Unpickle(stream, name, pickleEntry.FullName);
            var (stateDict, isCheckpoint, loss) = StateDictOf(root, name, pickleEntry.FullName);
            var tensors = Describe(stateDict, archive, name, pickleEntry.FullName[..^"data.pkl".Length]);
            return new PyTorchCheckpointContents(Materialize(tensors, archive, name), isCheckpoint, loss);
        }
    }

    // The one entry PyBridge will unpickle: it takes the first whose name ends in "data.pkl", so there must be exactly one.
    private static ZipArchiveEntry FindPickle(ZipArchive archive, string name)
    {
        var candidates = archive.Entries.Where(e => e.Name.EndsWith("data.pkl", StringComparison.Ordinal)).Take(2).ToList();
        return candidates.Count switch
        {
            0 => throw new MblmFormatException(name, null, "is a zip without a data.pkl entry: not a torch.save file"),
            2 => throw new MblmFormatException(name, null, $"has more than one entry named like data.pkl ('{candidates[0].FullName}', '{candidates[1].FullName}')"),
            _ => candidates[0].Name == "data.pkl" ? candidates[0]
                : throw new MblmFormatException(name, candidates[0].FullName, "is not named data.pkl: not a torch.save file"),
        };
    }

    private static byte[] ReadPickle(ZipArchiveEntry entry, string name)
    {
        if (entry.Length > MaxPickleBytes)
            throw new MblmFormatException(name, entry.FullName, $"is {Limits.FormatBytes(entry.Length)}; a state dict's pickle is at most {Limits.FormatBytes(MaxPickleBytes)}");
        var bytes = new byte[entry.Length];
        using var s = OpenChecked(entry, name);
        SafeTensors.ReadAtMost(s, bytes);
        s.Finish();
        return bytes;
    }

    // PyBridge's unpickler in descriptor mode (skipTensorRead): tensors come back as descriptors, nothing is allocated.
    // It reopens the zip on the same stream; the pickle it reads is the entry PickleGuard checked.
    private static Hashtable Unpickle(Stream stream, string name, string entry)
    {
        stream.Position = 0;
        try { return PyTorchUnpickler.UnpickleStateDict(stream, leaveOpen: true, skipTensorRead: true); }
        catch (Exception e) when (e is not (OutOfMemoryException or MblmFormatException))
        {
            throw new MblmFormatException(name, entry, $"is not a pickled state dict ({e.GetType().Name}: {e.Message})", e);
        }
    }

    private static (IDictionary StateDict, bool IsCheckpoint, double? Loss) StateDictOf(Hashtable root, string name, string entry)
    {
        if (!root.ContainsKey("MODEL")) return (root, false, null);
        if (root["MODEL"] is not IDictionary model)
            throw new MblmFormatException(name, entry, $"its \"MODEL\" is a {root["MODEL"]?.GetType().Name ?? "None"}, not a state dict");
        double? loss = root["LOSS"] switch
        {
            double d => d,
            int i => i,
            long l => l,
            _ => null,
        };
        PyBridgeDescriptor.Dispose(root["LOSS"]);
        return (model, true, loss);
    }

    // A tensor as the pickle describes it, checked: its storage entry, dtype, offset, shape and stride.
    private sealed record Described(string Name, int StorageIndex, ScalarType DType, long Offset, long[] Shape, long[] Stride);

    private static List<Described> Describe(IDictionary stateDict, ZipArchive archive, string name, string prefix)
    {
        var result = new List<Described>();
        var entries = archive.Entries;
        long tensorBytes = 0;
        try
        {
            foreach (DictionaryEntry item in stateDict)
            {
                if (item.Key is not string key) throw new MblmFormatException(name, item.Key?.ToString(), "a state dict key is not a string");
                var d = PyBridgeDescriptor.Read(item.Value)
                        ?? throw new MblmFormatException(name, key, $"is a {item.Value?.GetType().Name ?? "None"}, not a tensor");
                if (d.Index < 0 || d.Index >= entries.Count || !entries[d.Index].FullName.StartsWith(prefix + "data/", StringComparison.Ordinal))
                    throw new MblmFormatException(name, key, "its storage is not an entry under data/ of the archive");
                var storage = entries[d.Index];
                tensorBytes = SaturatingAdd(tensorBytes, CheckExtent(name, key, storage, d.DType, d.Offset, d.Shape, d.Stride));
                result.Add(new Described(key, d.Index, d.DType, d.Offset, d.Shape, d.Stride));
            }
        }
        finally
        {
            foreach (var value in stateDict.Values) PyBridgeDescriptor.Dispose(value);
        }
        long storageBytes = result.Select(d => d.StorageIndex).Distinct().Aggregate(0L, (sum, i) => SaturatingAdd(sum, entries[i].Length));
        Limits.RequireMemory(SaturatingAdd(storageBytes, tensorBytes), () => $"the {result.Count} tensors (with their storages while they are read)",
            m => new MblmFormatException(name, null, m));
        return result;
    }

    private static readonly HashSet<ScalarType> Supported =
    [
        ScalarType.Float64, ScalarType.Float32, ScalarType.Float16, ScalarType.BFloat16,
        ScalarType.Int64, ScalarType.Int32, ScalarType.Int16, ScalarType.Int8, ScalarType.Byte, ScalarType.Bool,
    ];

    private static long SaturatingAdd(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;

    // The highest element a view (offset, shape, stride) touches must lie inside its storage entry. Returns the bytes of
    // the tensor itself (more than its storage's when strides are 0).
    private static long CheckExtent(string name, string key, ZipArchiveEntry storage, ScalarType dtype, long offset, long[] shape, long[] stride)
    {
        MblmFormatException Bad(string problem) => new(name, key, problem);
        if (!Supported.Contains(dtype)) throw Bad($"has unsupported dtype {dtype}");
        if (shape.Length > MaxDims || stride.Length != shape.Length)
            throw Bad($"has shape [{string.Join(", ", shape)}] and stride [{string.Join(", ", stride)}]: at most {MaxDims} dimensions, one stride each");
        if (offset < 0 || shape.Any(d => d < 0) || stride.Any(s => s < 0))
            throw Bad($"has a negative storage offset, size or stride (offset {offset}, shape [{string.Join(", ", shape)}], stride [{string.Join(", ", stride)}])");
        int size = SafeTensors.ElementSize(dtype);
        long needed, bytes;
        try
        {
            long elements = 1, last = offset;
            for (int i = 0; i < shape.Length; i++)
            {
                elements = checked(elements * shape[i]);
                if (shape[i] > 0) last = checked(last + (shape[i] - 1) * stride[i]);
            }
            needed = elements == 0 ? 0 : checked((last + 1) * size);
            bytes = checked(elements * size);
        }
        catch (OverflowException) { throw Bad($"shape [{string.Join(", ", shape)}] with stride [{string.Join(", ", stride)}] addresses more elements than any file holds"); }
        if (storage.Length % size != 0)
            throw Bad($"its storage '{storage.FullName}' holds {storage.Length} bytes, not a whole number of {size}-byte {dtype} elements");
        if (needed > storage.Length)
            throw Bad($"needs {needed} bytes of storage (offset {offset}, shape [{string.Join(", ", shape)}], stride [{string.Join(", ", stride)}], {dtype}), " +
                      $"its storage '{storage.FullName}' holds {storage.Length}");
        return bytes;
    }

    // Reads each storage once, then copies every tensor's view of it into a tensor of its own.
    private static Dictionary<string, Tensor> Materialize(List<Described> tensors, ZipArchive archive, string name)
    {
        var storages = new Dictionary<int, Tensor>();
        var result = new Dictionary<string, Tensor>();
        try
        {
            foreach (var d in tensors)
            {
                if (!storages.TryGetValue(d.StorageIndex, out var storage))
                {
                    var entry = archive.Entries[d.StorageIndex];
                    storage = empty(entry.Length / SafeTensors.ElementSize(d.DType), d.DType);
                    storages[d.StorageIndex] = storage;
                    ReadStorage(entry, storage, name);
                }
                else if (storage.dtype != d.DType)
                    throw new MblmFormatException(name, d.Name, $"shares its storage with a {storage.dtype} tensor but is {d.DType}");
                var tensor = empty(d.Shape, d.DType);
                result[d.Name] = tensor;
                using var view = storage.as_strided(d.Shape, d.Stride, d.Offset);
                tensor.copy_(view);
            }
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var s in storages.Values) s.Dispose();
        }
    }

    private static void ReadStorage(ZipArchiveEntry entry, Tensor storage, string name)
    {
        using var s = OpenChecked(entry, name);
        SafeTensors.ReadInto(s, storage, entry.Length, name, entry.FullName);
        s.Finish();
    }

    // An entry read never past the length the zip directory declares, and checked to hold exactly that (CheckedEntryStream).
    private static CheckedEntryStream OpenChecked(ZipArchiveEntry entry, string name)
    {
        try { return new CheckedEntryStream(entry.Open(), entry.Length, name, entry.FullName, expectedSha256: null); }
        catch (InvalidDataException e) { throw new MblmFormatException(name, entry.FullName, $"cannot be decompressed: {e.Message}", e); }
    }

    /// <summary>
    /// Writes <paramref name="stateDict"/> as a <c>torch.save</c> zip that PyTorch's <c>torch.load</c> reads (also with
    /// <c>weights_only=True</c>): with <paramref name="trainerLayout"/> (the default) as the reference trainer's checkpoint
    /// <c>{"MODEL": state_dict, "LOSS": loss}</c> (<c>None</c> when <paramref name="loss"/> is null), otherwise as a bare state
    /// dict. Tensors are written from the CPU, contiguous, in their dtype and in the dictionary's order. Atomic: an existing
    /// file is replaced only once the new one is complete.
    /// </summary>
    public static void Save(IReadOnlyDictionary<string, Tensor> stateDict, string path, double? loss = null, bool trainerLayout = true)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (key, value) in stateDict) tensors[key] = value.detach().cpu().contiguous();
        IDictionary root = trainerLayout ? new Hashtable { ["MODEL"] = tensors, ["LOSS"] = loss } : tensors;
        try
        {
            using (var stream = File.Create(temp)) PyTorchPickler.PickleStateDict(stream, root, leaveOpen: true);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
