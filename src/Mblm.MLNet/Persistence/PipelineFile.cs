using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using static Mblm.MLNet.Persistence.PipelineArchive;

namespace Mblm.MLNet.Persistence;

/// <summary>
/// The whole-pipeline file of <see cref="MblmCatalog.SaveModel"/> (format <c>mblm-mlnet-pipeline</c>, version 1; see
/// <c>docs/pipeline-format.md</c>). A zip holding a manifest, the input schema (as an ML.NET model file of an empty chain)
/// and the pipeline's stages in order: runs of ordinary ML.NET transforms as ML.NET model files, MBLM stages as each
/// writes itself (<see cref="IMblmStage"/>), read back through the table of stage readers below.
/// </summary>
internal static class PipelineFile
{
    private const string SchemaEntry = "input-schema.zip";
    private const string MlNetKind = "mlnet";
    private const string MlNetEntry = "mlnet.zip";

    /// <summary>Every MBLM stage type, by kind: the newest layout version it reads and its reader. A new stage adds one line.</summary>
    private static readonly Dictionary<string, (int Version, StageLoader Load)> Readers = new()
    {
        [MblmLanguageModelTransformer.StageKind] = (MblmLanguageModelTransformer.StageVersion, MblmLanguageModelTransformer.Load),
        [MblmAnswerClassifierTransformer.StageKind] = (MblmAnswerClassifierTransformer.StageVersion, MblmAnswerClassifierTransformer.Load),
        [MblmTextClassifierTransformer.StageKind] = (MblmTextClassifierTransformer.StageVersion, MblmTextClassifierTransformer.Load),
    };

    public static void Save(MLContext context, ITransformer model, DataViewSchema inputSchema, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputSchema);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!Flatten(model).Any())
            throw new ArgumentException("the pipeline has no stages; a pipeline file holds at least one (an empty pipeline would not load)", nameof(model));
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var file = File.Create(temp))
            using (var zip = new ZipArchive(file, ZipArchiveMode.Create))
            {
                var writer = new PipelineWriter(zip);
                WriteMlNet(context, writer, SchemaEntry, new TransformerChain<ITransformer>(), inputSchema);
                var stages = new List<StageEntry>();
                var schema = inputSchema;
                var run = new List<ITransformer>();
                DataViewSchema runInput = schema;
                string NextFolder()
                {
                    if (stages.Count >= MaxStages) throw new ArgumentException($"the pipeline has more than {MaxStages} stages, the most a pipeline file holds", nameof(model));
                    return $"stages/{stages.Count:D3}/";
                }
                void FlushRun()
                {
                    if (run.Count == 0) return;
                    string folder = NextFolder();
                    WriteMlNet(context, writer, folder + MlNetEntry, new TransformerChain<ITransformer>(run.ToArray()), runInput);
                    stages.Add(new StageEntry(MlNetKind, folder));
                    run.Clear();
                }
                foreach (var stage in Flatten(model))
                {
                    if (stage is IMblmStage mblm)
                    {
                        FlushRun();
                        string folder = NextFolder();
                        mblm.Save(new StageWriter(writer, folder));
                        stages.Add(new StageEntry(mblm.Kind, folder, mblm.Version));
                    }
                    else
                    {
                        if (run.Count == 0) runInput = schema;
                        run.Add(stage);
                    }
                    schema = stage.GetOutputSchema(schema);
                }
                FlushRun();
                string library = $"Mblm.MLNet {typeof(PipelineFile).Assembly.GetName().Version}";
                writer.WriteManifest(new Manifest(Format, PipelineArchive.Version, library, stages, writer.Checksums));
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>
    /// Loads a pipeline file. Every problem with the file is an <see cref="MblmFormatException"/> naming the file and, where
    /// there is one, the entry (a missing file: <see cref="FileNotFoundException"/>); nothing is left behind on failure.
    /// </summary>
    public static ITransformer Load(MLContext context, string path, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(context);
        using var file = PipelineReader.Open(path);
        if (!file.HasChecksums)
            Warn(context, $"'{path}' has no checksums (written by {(file.Manifest.Library is null ? "an earlier Mblm.MLNet" : Shown(file.Manifest.Library))}): damage to its entries " +
                          "cannot be detected. Save it again with mlContext.Mblm().SaveModel to add them.");
        var loaded = new List<(ITransformer Transformer, StageEntry Stage)>();
        try
        {
            (ReadMlNet(context, file, SchemaEntry, out var saved) as IDisposable)?.Dispose(); // an empty chain: only its schema counts
            inputSchema = saved ?? throw file.Error(SchemaEntry, "holds no input schema");
            foreach (var stage in file.Manifest.Stages)
            {
                try
                {
                    if (stage.Kind == MlNetKind)
                    {
                        foreach (var t in Flatten(ReadMlNet(context, file, stage.Folder + MlNetEntry, out _))) loaded.Add((t, stage));
                        continue;
                    }
                    if (!Readers.TryGetValue(stage.Kind, out var reader))
                        throw file.Error(null, $"stage kind '{Shown(stage.Kind)}' in {stage.Folder} is unknown to this Mblm.MLNet (it reads {string.Join(", ", Readers.Keys.Prepend(MlNetKind))})");
                    int version = stage.Version ?? 1;
                    if (version > reader.Version)
                        throw file.Error(null, $"the {stage.Kind} stage in {stage.Folder} has layout version {version}; " +
                                               $"this Mblm.MLNet reads up to version {reader.Version} (written by {Shown(file.Manifest.Library)})");
                    var transformer = reader.Load(new StageReader(context, file, stage.Folder, stage.Kind, version));
                    if (transformer is IMblmStage mblm) mblm.AttachHost(((IHostEnvironment)context).Register("MblmTransform"));
                    loaded.Add((transformer, stage));
                }
                catch (Exception e) when (e is not MblmFormatException)
                {
                    throw file.Error(stage.Folder, $"the {stage.Kind} stage cannot be loaded: {e.Message}", e);
                }
            }
            CheckSchemas(file, inputSchema, loaded);
        }
        catch
        {
            foreach (var (t, _) in loaded) (t as IDisposable)?.Dispose();
            throw;
        }
        return new TransformerChain<ITransformer>(loaded.Select(l => l.Transformer).ToArray());
    }

    // Every stage must accept the columns the stages before it produce (as it did when the pipeline was saved): a stage
    // that does not (a swapped or edited stage) is refused now, not at the first prediction.
    private static void CheckSchemas(PipelineReader file, DataViewSchema inputSchema, List<(ITransformer Transformer, StageEntry Stage)> stages)
    {
        var schema = inputSchema;
        foreach (var (t, stage) in stages)
        {
            if (t is ICheckedAtLoad checkedAtLoad && checkedAtLoad.ProblemAtLoad(schema) is var (entry, problem))
                throw file.Error(stage.Folder + entry, problem);
            try { schema = t.GetOutputSchema(schema); }
            catch (Exception e) when (e is not MblmFormatException)
            {
                throw file.Error(stage.Folder, $"the {stage.Kind} stage does not accept the columns the stages before it produce: {e.Message}", e);
            }
        }
    }

    private static void Warn(MLContext context, string message)
    {
        using var ch = ((IHostEnvironment)context).Register("MblmPipeline").Start("LoadModel");
        ch.Warning(MessageSensitivity.None, message);
    }

    // Chains are opened up so that runs of ML.NET transforms around MBLM stages can be saved by ML.NET itself.
    private static IEnumerable<ITransformer> Flatten(ITransformer model)
    {
        if (model is IEnumerable<ITransformer> chain)
        {
            foreach (var inner in chain)
                foreach (var t in Flatten(inner)) yield return t;
        }
        else yield return model;
    }

    private static void WriteMlNet(MLContext context, PipelineWriter writer, string entry, ITransformer chain, DataViewSchema schema)
    {
        using var buffer = new MemoryStream();
        try { context.Model.Save(chain, schema, buffer); }
        catch (Exception e) when (e is not NotSupportedException)
        {
            throw new NotSupportedException($"a pipeline stage cannot be saved by ML.NET ({string.Join(" -> ", ((IEnumerable<ITransformer>)chain).Select(t => t.GetType().Name))}): {e.Message}", e);
        }
        if (buffer.Length > MaxMlNetBytes)
            throw new NotSupportedException($"ML.NET saves the transforms of {entry} in {Limits.FormatBytes(buffer.Length)}; a pipeline file holds at most " +
                $"{Limits.FormatBytes(MaxMlNetBytes)} per ML.NET model");
        buffer.Position = 0;
        writer.Write(entry, CompressionLevel.Optimal, buffer.CopyTo);
    }

    /// <summary>
    /// A nested ML.NET model file: read within <see cref="MaxMlNetBytes"/> and checked, then checked as a zip before ML.NET
    /// sees it (at most <see cref="MaxMlNetEntries"/> entries that inflate to at most <see cref="MaxMlNetInflatedBytes"/> and
    /// nest at most <see cref="Limits.MaxNestingDepth"/> folders deep), so that ML.NET — which unpacks it into a temporary
    /// folder — is never handed a file it cannot open (it would leave that folder behind).
    /// </summary>
    private static ITransformer ReadMlNet(MLContext context, PipelineReader file, string entry, out DataViewSchema? schema)
    {
        using var buffer = file.ReadBytes(entry, MaxMlNetBytes, () => $"an ML.NET model entry holds at most {Limits.FormatBytes(MaxMlNetBytes)}");
        try
        {
            ZipDirectory.Check(buffer, file.Path, entry, MaxMlNetEntries);
            using var zip = new ZipArchive(buffer, ZipArchiveMode.Read, leaveOpen: true);
            if (zip.Entries.Count > MaxMlNetEntries)
                throw file.Error(entry, $"has {zip.Entries.Count:N0} entries; an ML.NET model entry has at most {MaxMlNetEntries:N0}");
            long inflated = 0;
            foreach (var e in zip.Entries)
            {
                inflated = e.Length > MaxMlNetInflatedBytes - inflated ? long.MaxValue : inflated + e.Length;
                if (inflated > MaxMlNetInflatedBytes)
                    throw file.Error(entry, $"inflates to more than {Limits.FormatBytes(MaxMlNetInflatedBytes)}, the most an ML.NET model entry may");
                if (e.FullName.Split('/', '\\').Length > Limits.MaxNestingDepth)
                    throw file.Error(entry, $"has an entry nested more than {Limits.MaxNestingDepth} folders deep");
            }
        }
        catch (InvalidDataException e) { throw file.Error(entry, $"is not an ML.NET model file (not a zip archive: {e.Message})", e); }
        buffer.Position = 0;
        try { return context.Model.Load(buffer, out schema); }
        catch (Exception e) { throw file.Error(entry, $"is not an ML.NET model file that ML.NET can load: {e.Message}", e); }
    }
}
