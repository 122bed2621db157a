using System.IO.Compression;
using System.Text.Json;
using Mblm.MLNet.Vision;
using Microsoft.ML;
using Microsoft.ML.Data;
using static Mblm.MLNet.PipelineArchive;

namespace Mblm.MLNet;

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
    };

    public static void Save(MLContext context, ITransformer model, DataViewSchema inputSchema, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputSchema);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var file = File.Create(temp))
            using (var zip = new ZipArchive(file, ZipArchiveMode.Create))
            {
                WriteMlNet(context, zip, SchemaEntry, new TransformerChain<ITransformer>(), inputSchema);
                var stages = new List<StageEntry>();
                var schema = inputSchema;
                var run = new List<ITransformer>();
                DataViewSchema runInput = schema;
                string NextFolder() => $"stages/{stages.Count:D3}/";
                void FlushRun()
                {
                    if (run.Count == 0) return;
                    string folder = NextFolder();
                    WriteMlNet(context, zip, folder + MlNetEntry, new TransformerChain<ITransformer>(run.ToArray()), runInput);
                    stages.Add(new StageEntry(MlNetKind, folder));
                    run.Clear();
                }
                foreach (var stage in Flatten(model))
                {
                    if (stage is IMblmStage mblm)
                    {
                        FlushRun();
                        string folder = NextFolder();
                        mblm.Save(new StageWriter(zip, folder));
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
                WriteText(zip, ManifestEntry, JsonSerializer.Serialize(new Manifest(Format, PipelineArchive.Version, library, stages), Json));
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    public static ITransformer Load(MLContext context, string path, out DataViewSchema inputSchema)
    {
        using var zip = Open(path);
        var manifest = ReadManifest(zip, path);
        ReadMlNet(context, zip, SchemaEntry, path, out inputSchema);
        var stages = new List<ITransformer>();
        try
        {
            foreach (var stage in manifest.Stages)
            {
                if (stage.Kind == MlNetKind)
                {
                    stages.AddRange(Flatten(ReadMlNet(context, zip, stage.Folder + MlNetEntry, path, out _)));
                    continue;
                }
                if (!Readers.TryGetValue(stage.Kind, out var reader))
                    throw new InvalidDataException($"'{path}': stage kind '{stage.Kind}' in {stage.Folder} is unknown to this Mblm.MLNet");
                int version = stage.Version ?? 1;
                if (version > reader.Version)
                    throw new InvalidDataException($"'{path}': the {stage.Kind} stage in {stage.Folder} has layout version {version}; " +
                                                   $"this Mblm.MLNet reads up to version {reader.Version} (written by {manifest.Library})");
                stages.Add(reader.Load(new StageReader(context, zip, path, stage.Folder, version)));
            }
        }
        catch
        {
            foreach (var s in stages) (s as IDisposable)?.Dispose();
            throw;
        }
        return new TransformerChain<ITransformer>(stages.ToArray());
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

    private static void WriteMlNet(MLContext context, ZipArchive zip, string entry, ITransformer chain, DataViewSchema schema)
    {
        using var buffer = new MemoryStream();
        try { context.Model.Save(chain, schema, buffer); }
        catch (Exception e) when (e is not NotSupportedException)
        {
            throw new NotSupportedException($"a pipeline stage cannot be saved by ML.NET ({string.Join(" -> ", ((IEnumerable<ITransformer>)chain).Select(t => t.GetType().Name))}): {e.Message}", e);
        }
        var z = zip.CreateEntry(entry, CompressionLevel.Optimal);
        using var s = z.Open();
        buffer.Position = 0;
        buffer.CopyTo(s);
    }

    private static ITransformer ReadMlNet(MLContext context, ZipArchive zip, string entry, string path, out DataViewSchema schema)
    {
        using var buffer = ReadBytes(zip, entry, path);
        return context.Model.Load(buffer, out schema);
    }
}
