using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace Mblm.MLNet.Persistence;

/// <summary>
/// The pipeline file as a zip archive: its manifest, its limits, and entry access (<see cref="PipelineReader"/>,
/// <see cref="PipelineWriter"/>) with errors that name the file and the entry. Knows no stage type; <see cref="PipelineFile"/>
/// holds the table of stage readers.
/// </summary>
internal static class PipelineArchive
{
    public const string Format = "mblm-mlnet-pipeline";
    /// <summary>The file format version; a stage's own format has its own version (<see cref="IMblmStage.Version"/>).</summary>
    public const int Version = 1;
    public const string ManifestEntry = "mblm-pipeline.json";
    public const string WeightsEntry = "model.safetensors";

    // ---- limits (docs/pipeline-format.md, "Limits"): each entry's size is bounded by what it holds ----

    /// <summary>Largest JSON entry: the manifest, <c>stage.json</c>, <c>model.json</c>.</summary>
    public const long MaxJsonBytes = 1L << 20;
    /// <summary>Largest nested ML.NET model file (<c>input-schema.zip</c>, <c>stages/NNN/mlnet.zip</c>), as stored in the pipeline.</summary>
    public const long MaxMlNetBytes = 256L << 20;
    /// <summary>Largest total of a nested ML.NET model file's declared entry sizes (what ML.NET inflates it to).</summary>
    public const long MaxMlNetInflatedBytes = 1L << 30;
    /// <summary>Most entries in a nested ML.NET model file.</summary>
    public const int MaxMlNetEntries = 10_000;
    /// <summary>Most entries in a pipeline file.</summary>
    public const int MaxEntries = 10_000;
    /// <summary>Most stages in a pipeline file.</summary>
    public const int MaxStages = 1_000;
    /// <summary>
    /// What a weights entry may hold beyond its model's float32 parameters: the safetensors header (names, dtypes, shapes,
    /// offsets: a few hundred bytes per tensor) and persistent buffers (rotary frequencies).
    /// </summary>
    public static long WeightsSlack(long parameterBytes) => (16L << 20) + parameterBytes / 16;

    /// <summary>A value read from a file, for an error message: at most 100 characters (a hostile file's strings can be long).</summary>
    public static string Shown(string? value) => value is null ? "" : value.Length <= 100 ? value : value[..100] + $"… ({value.Length:N0} characters)";

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
        MaxDepth = Limits.MaxNestingDepth,
    };

    /// <summary>JSON entries are parsed with this depth bound (a deeply nested file is an error, never a stack overflow).</summary>
    internal static readonly JsonDocumentOptions JsonDocumentLimits = new() { MaxDepth = Limits.MaxNestingDepth };

    /// <param name="Format">Always <see cref="PipelineArchive.Format"/>.</param>
    /// <param name="Version">The file format version.</param>
    /// <param name="Library">The library that wrote the file.</param>
    /// <param name="Stages">The stages in order.</param>
    /// <param name="Sha256">The SHA-256 of every other entry, by entry name (lower-case hex); absent in files written before checksums.</param>
    public sealed record Manifest(string Format, int Version, string Library, List<StageEntry> Stages, SortedDictionary<string, string>? Sha256 = null);

    /// <param name="Kind">The stage kind: <c>mlnet</c> or an MBLM stage's <see cref="IMblmStage.Kind"/>.</param>
    /// <param name="Folder">Its folder, <c>stages/NNN/</c>.</param>
    /// <param name="Version">An MBLM stage's own format version (absent in files that predate it: version 1).</param>
    public sealed record StageEntry(string Kind, string Folder, int? Version = null);

    /// <summary>
    /// The weights of the first stage of kind <paramref name="kind"/> in a pipeline file, on the CPU, without loading the
    /// pipeline (used by knowledge transfer); null when there is none. Read with the same limits and checks as a load. The
    /// caller disposes the tensors.
    /// </summary>
    public static Dictionary<string, Tensor>? ReadWeights(string path, string kind)
    {
        using var file = PipelineReader.Open(path);
        var stage = file.Manifest.Stages.FirstOrDefault(s => s.Kind == kind);
        if (stage is null) return null;
        var reader = new StageReader(null, file, stage.Folder, stage.Kind, stage.Version ?? 1);
        return reader.ReadTensors(reader.ReadConfig());
    }
}

/// <summary>
/// An open pipeline file: its checked manifest and its entries, each read through a <see cref="CheckedEntryStream"/> with a
/// size limit (checked against the declared size before reading, and while reading) and, when the manifest has checksums,
/// its SHA-256. Every problem is an <see cref="MblmFormatException"/> naming the file (and the entry).
/// </summary>
internal sealed partial class PipelineReader : IDisposable
{
    private readonly ZipArchive _zip;
    private readonly Dictionary<string, ZipArchiveEntry> _entries;

    private PipelineReader(string path, ZipArchive zip, Dictionary<string, ZipArchiveEntry> entries)
    {
        Path = path;
        _zip = zip;
        _entries = entries;
        Manifest = null!;
    }

    /// <summary>The file, as the caller named it.</summary>
    public string Path { get; }

    /// <summary>The manifest, checked.</summary>
    public PipelineArchive.Manifest Manifest { get; private set; }

    /// <summary>Whether the file carries checksums (files written before them do not).</summary>
    public bool HasChecksums => Manifest.Sha256 is not null;

    /// <summary>An error about the file, or one of its entries.</summary>
    public MblmFormatException Error(string? entry, string problem, Exception? inner = null) => new(Path, entry, problem, inner);

    /// <summary>Opens a pipeline file and reads its manifest: the format is ours, the version not newer than this library reads.</summary>
    public static PipelineReader Open(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (Directory.Exists(path)) throw new MblmFormatException(path, null, "is a directory, not an MBLM pipeline file");
        if (!File.Exists(path)) throw new FileNotFoundException($"pipeline file '{path}' does not exist", path);
        ZipArchive zip;
        using (var probe = File.OpenRead(path)) ZipDirectory.Check(probe, path, null, PipelineArchive.MaxEntries);
        try { zip = ZipFile.OpenRead(path); }
        catch (InvalidDataException e) { throw new MblmFormatException(path, null, $"is not an MBLM pipeline file (not a zip archive: {e.Message})", e); }
        try
        {
            var entries = new Dictionary<string, ZipArchiveEntry>(StringComparer.Ordinal);
            try
            {
                if (zip.Entries.Count > PipelineArchive.MaxEntries)
                    throw new MblmFormatException(path, null, $"has {zip.Entries.Count:N0} entries; a pipeline file has at most {PipelineArchive.MaxEntries:N0}");
                foreach (var e in zip.Entries)
                    if (!entries.TryAdd(e.FullName, e)) throw new MblmFormatException(path, e.FullName, "appears twice in the zip (a damaged or forged file)");
            }
            catch (InvalidDataException e) { throw new MblmFormatException(path, null, $"is a damaged zip archive: {e.Message}", e); }
            var reader = new PipelineReader(path, zip, entries);
            reader.Manifest = reader.ReadManifest();
            return reader;
        }
        catch
        {
            zip.Dispose();
            throw;
        }
    }

    public void Dispose() => _zip.Dispose();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256Hex();

    private PipelineArchive.Manifest ReadManifest()
    {
        const string entry = PipelineArchive.ManifestEntry;
        if (!_entries.ContainsKey(entry)) throw Error(null, $"is not an MBLM pipeline file: it has no '{entry}'");
        PipelineArchive.Manifest? m;
        try { m = JsonSerializer.Deserialize<PipelineArchive.Manifest>(ReadText(entry, checksum: false), PipelineArchive.Json); }
        catch (Exception e) when (e is JsonException or ArgumentException or NotSupportedException or InvalidOperationException)
        {
            throw Error(entry, $"is not a valid manifest: {e.Message}", e);
        }
        if (m is null) throw Error(entry, "is not a valid manifest: it is null");
        if (m.Format != PipelineArchive.Format)
            throw Error(null, $"is not an MBLM pipeline file (format '{PipelineArchive.Shown(m.Format)}', expected '{PipelineArchive.Format}')");
        string writer = m.Library is null ? "an unknown library" : PipelineArchive.Shown(m.Library);
        if (m.Version > PipelineArchive.Version)
            throw Error(null, $"has pipeline format version {m.Version}; this Mblm.MLNet reads up to version {PipelineArchive.Version} (written by {writer})");
        if (m.Version < 1) throw Error(entry, $"has format version {m.Version}; versions start at 1");
        if (m.Stages is null) throw Error(entry, "has no \"stages\" list");
        if (m.Stages.Count == 0) throw Error(entry, "lists no stages: a pipeline file holds at least one stage");
        if (m.Stages.Count > PipelineArchive.MaxStages)
            throw Error(entry, $"lists {m.Stages.Count:N0} stages; a pipeline file has at most {PipelineArchive.MaxStages:N0}");
        var folders = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < m.Stages.Count; i++)
        {
            var s = m.Stages[i];
            string where = $"stage {i} of \"stages\"";
            if (s is null) throw Error(entry, $"{where} is null");
            if (string.IsNullOrWhiteSpace(s.Kind)) throw Error(entry, $"{where} has no \"kind\"");
            if (!IsFolder(s.Folder)) throw Error(entry, $"{where} has folder '{PipelineArchive.Shown(s.Folder)}'; expected a relative path ending in '/', such as 'stages/{i:D3}/'");
            if (!folders.Add(s.Folder)) throw Error(entry, $"{where} has folder '{s.Folder}', which an earlier stage has too");
            if (s.Version is < 1) throw Error(entry, $"{where} has layout version {s.Version}; versions start at 1");
        }
        if (m.Sha256 is { } sums)
        {
            foreach (var (name, hash) in sums)
            {
                if (name == entry) throw Error(entry, "lists a checksum of itself");
                if (hash is null || !Sha256Hex().IsMatch(hash)) throw Error(entry,
                    $"has checksum '{PipelineArchive.Shown(hash)}' for '{PipelineArchive.Shown(name)}'; expected 64 lower-case hex digits");
                if (!_entries.ContainsKey(name)) throw Error(PipelineArchive.Shown(name), "is listed in the manifest's checksums but missing from the file");
            }
        }
        return m;
    }

    private static bool IsFolder(string? folder) =>
        !string.IsNullOrEmpty(folder) && folder.Length <= 200 && folder.EndsWith('/') && !folder.StartsWith('/') && !folder.Contains('\\')
        && folder.Split('/').SkipLast(1).All(part => part.Length > 0 && part is not ("." or ".."));

    /// <summary>
    /// Opens an entry for reading: refused when its declared size exceeds <paramref name="limit"/> (<paramref name="rule"/>
    /// says why, e.g. "a JSON entry holds at most 1 MiB"); the stream refuses to go past the declared size and, with
    /// <paramref name="checksum"/> in a file with checksums, hashes what it reads. Call <see cref="CheckedEntryStream.Finish()"/>
    /// when done.
    /// </summary>
    public CheckedEntryStream OpenEntry(string name, long limit, Func<string> rule, bool checksum = true)
    {
        if (!_entries.TryGetValue(name, out var entry)) throw Error(name, "is missing (not an MBLM pipeline file, or a damaged one)");
        if (entry.Length > limit) throw Error(name, $"inflates to {Limits.FormatBytes(entry.Length)}; {rule()}");
        string? expected = null;
        if (checksum && Manifest?.Sha256 is { } sums && !sums.TryGetValue(name, out expected))
            throw Error(name, "has no checksum in the manifest, which lists checksums for its entries (a damaged or edited file)");
        Stream stream;
        try { stream = entry.Open(); }
        catch (InvalidDataException e) { throw Error(name, $"is damaged: {e.Message}", e); }
        return new CheckedEntryStream(stream, entry.Length, Path, name, expected);
    }

    /// <summary>Reads a JSON entry's text (at most <see cref="PipelineArchive.MaxJsonBytes"/>), checked.</summary>
    public string ReadText(string name, bool checksum = true) =>
        Read(name, PipelineArchive.MaxJsonBytes, () => $"a JSON entry holds at most {Limits.FormatBytes(PipelineArchive.MaxJsonBytes)}", (s, _) =>
        {
            using var r = new StreamReader(s, new UTF8Encoding(false, true), detectEncodingFromByteOrderMarks: false, leaveOpen: true);
            try { return r.ReadToEnd(); }
            catch (DecoderFallbackException e) { throw Error(name, $"is not UTF-8 text: {e.Message}", e); }
        }, checksum: checksum);

    /// <summary>Reads an entry into memory (at most <paramref name="limit"/> bytes), checked.</summary>
    public MemoryStream ReadBytes(string name, long limit, Func<string> rule) =>
        Read(name, limit, rule, (s, length) =>
        {
            var buffer = new MemoryStream((int)Math.Min(length, int.MaxValue));
            s.CopyTo(buffer);
            buffer.Position = 0;
            return buffer;
        });

    /// <summary>
    /// Runs <paramref name="read"/> over an entry's checked stream (with its declared length), then checks that the entry
    /// was whole and matches its checksum. When <paramref name="read"/> fails on an entry whose checksum does not match, the
    /// error says the file is damaged (with the reader's error inside).
    /// </summary>
    /// <param name="name">The entry.</param>
    /// <param name="limit">Its largest declared size.</param>
    /// <param name="rule">Why, for the error (e.g. "a JSON entry holds at most 1 MiB").</param>
    /// <param name="read">Reads the entry from the stream, given its declared length.</param>
    /// <param name="discard">Frees a result that turns out to come from a damaged entry.</param>
    /// <param name="checksum">Whether the entry has a checksum in the manifest (all but the manifest itself).</param>
    public T Read<T>(string name, long limit, Func<string> rule, Func<CheckedEntryStream, long, T> read, Action<T>? discard = null, bool checksum = true)
    {
        using var stream = OpenEntry(name, limit, rule, checksum);
        T result;
        try { result = read(stream, stream.Declared); }
        catch (Exception e) when (stream.DamageBehind(e) is { } damage) { throw damage; }
        try { stream.Finish(); }
        catch
        {
            if (discard is not null) discard(result);
            else (result as IDisposable)?.Dispose();
            throw;
        }
        return result;
    }
}

/// <summary>Writes a pipeline file's entries and records each one's SHA-256 for the manifest.</summary>
internal sealed class PipelineWriter(ZipArchive zip)
{
    /// <summary>The SHA-256 of every entry written, by name.</summary>
    public SortedDictionary<string, string> Checksums { get; } = new(StringComparer.Ordinal);

    /// <summary>Writes an entry through <paramref name="write"/>.</summary>
    public void Write(string name, CompressionLevel level, Action<Stream> write)
    {
        using var stream = new HashingWriteStream(zip.CreateEntry(name, level).Open());
        write(stream);
        Checksums[name] = stream.Sha256();
    }

    /// <summary>Writes a text entry (UTF-8, no byte order mark).</summary>
    public void WriteText(string name, string text) => Write(name, CompressionLevel.Optimal, s => s.Write(new UTF8Encoding(false).GetBytes(text)));

    /// <summary>Writes the manifest (last: it holds the other entries' checksums).</summary>
    public void WriteManifest(PipelineArchive.Manifest manifest)
    {
        using var w = new StreamWriter(zip.CreateEntry(PipelineArchive.ManifestEntry, CompressionLevel.Optimal).Open(), new UTF8Encoding(false));
        w.Write(JsonSerializer.Serialize(manifest, PipelineArchive.Json));
    }
}
