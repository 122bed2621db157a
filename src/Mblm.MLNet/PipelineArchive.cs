using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Serialization;
using Mblm.Weights;
using static TorchSharp.torch;

namespace Mblm.MLNet;

/// <summary>
/// The pipeline file as a zip archive: its manifest and entry access, with errors that name the file. Knows no stage type;
/// <see cref="PipelineFile"/> holds the table of stage readers.
/// </summary>
internal static class PipelineArchive
{
    public const string Format = "mblm-mlnet-pipeline";
    /// <summary>The file format version; a stage's own format has its own version (<see cref="IMblmStage.Version"/>).</summary>
    public const int Version = 1;
    public const string ManifestEntry = "mblm-pipeline.json";
    public const string WeightsEntry = "model.safetensors";

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <param name="Format">Always <see cref="PipelineArchive.Format"/>.</param>
    /// <param name="Version">The file format version.</param>
    /// <param name="Library">The library that wrote the file.</param>
    /// <param name="Stages">The stages in order.</param>
    public sealed record Manifest(string Format, int Version, string Library, List<StageEntry> Stages);

    /// <param name="Kind">The stage kind: <c>mlnet</c> or an MBLM stage's <see cref="IMblmStage.Kind"/>.</param>
    /// <param name="Folder">Its folder, <c>stages/NNN/</c>.</param>
    /// <param name="Version">An MBLM stage's own format version (absent in files that predate it: version 1).</param>
    public sealed record StageEntry(string Kind, string Folder, int? Version = null);

    public static ZipArchive Open(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"pipeline file '{path}' does not exist", path);
        try { return ZipFile.OpenRead(path); }
        catch (InvalidDataException e) { throw new InvalidDataException($"'{path}' is not an MBLM pipeline file (not a zip archive)", e); }
    }

    /// <summary>The manifest, checked: the format is ours and its version not newer than this library reads.</summary>
    public static Manifest ReadManifest(ZipArchive zip, string path)
    {
        Manifest manifest;
        try { manifest = JsonSerializer.Deserialize<Manifest>(ReadText(zip, ManifestEntry, path), Json) ?? throw new JsonException("empty manifest"); }
        catch (JsonException e) { throw new InvalidDataException($"'{path}': {ManifestEntry} is not a valid manifest: {e.Message}", e); }
        if (manifest.Format != Format)
            throw new InvalidDataException($"'{path}' is not an MBLM pipeline file (format '{manifest.Format}', expected '{Format}')");
        if (manifest.Version > Version)
            throw new InvalidDataException($"'{path}' has pipeline format version {manifest.Version}; this Mblm.MLNet reads up to version {Version} (written by {manifest.Library})");
        return manifest;
    }

    /// <summary>
    /// The weights of the first stage of kind <paramref name="kind"/> in a pipeline file, on the CPU, without loading the
    /// pipeline (used by knowledge transfer); null when there is none. The caller disposes the tensors.
    /// </summary>
    public static Dictionary<string, Tensor>? ReadWeights(string path, string kind)
    {
        using var zip = Open(path);
        var stage = ReadManifest(zip, path).Stages.FirstOrDefault(s => s.Kind == kind);
        if (stage is null) return null;
        using var bytes = ReadBytes(zip, stage.Folder + WeightsEntry, path);
        return SafeTensors.Load(bytes, $"{path}:{stage.Folder}{WeightsEntry}");
    }

    public static void WriteText(ZipArchive zip, string entry, string text)
    {
        using var w = new StreamWriter(zip.CreateEntry(entry, CompressionLevel.Optimal).Open());
        w.Write(text);
    }

    public static string ReadText(ZipArchive zip, string entry, string path)
    {
        using var r = new StreamReader(Entry(zip, entry, path).Open());
        return r.ReadToEnd();
    }

    public static MemoryStream ReadBytes(ZipArchive zip, string entry, string path)
    {
        var buffer = new MemoryStream();
        using (var s = Entry(zip, entry, path).Open()) s.CopyTo(buffer);
        buffer.Position = 0;
        return buffer;
    }

    private static ZipArchiveEntry Entry(ZipArchive zip, string entry, string path) =>
        zip.GetEntry(entry) ?? throw new InvalidDataException($"'{path}' is missing the entry '{entry}' (not an MBLM pipeline file, or a damaged one)");
}
