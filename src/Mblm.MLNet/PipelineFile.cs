using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Serialization;
using Mblm.Config;
using Mblm.Generation;
using Mblm.Model;
using Mblm.Weights;
using Microsoft.ML;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.MLNet;

/// <summary>
/// The whole-pipeline file of <see cref="MblmCatalog.SaveModel"/> (format <c>mblm-mlnet-pipeline</c>, version 1; see
/// <c>docs/pipeline-format.md</c>). A zip holding a manifest, the input schema (as an ML.NET model file of an empty chain)
/// and the pipeline's stages in order: runs of ordinary ML.NET transforms as ML.NET model files, MBLM stages as their
/// options, model config and safetensors weights.
/// </summary>
internal static class PipelineFile
{
    public const string Format = "mblm-mlnet-pipeline";
    public const int Version = 1;
    private const string ManifestEntry = "mblm-pipeline.json";
    private const string SchemaEntry = "input-schema.zip";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
    };

    private sealed record Manifest(string Format, int Version, string Library, List<StageEntry> Stages);

    private sealed record StageEntry(string Kind, string Folder);

    private sealed record LanguageModelStage(
        string InputColumnName, string BitsPerByteColumnName, string FeaturesColumnName, string CompletionColumnName,
        int MaxNewBytes, int ScoringBatchSize, SamplingStage Sampling,
        int MaxEpochs, long? MaxSteps, int BatchSize, double LearningRate, double WarmupFraction, double? GradientClipping,
        TrainingSummary Training);

    private sealed record AnswerClassifierStage(
        string ImageColumnName, string QuestionColumnName, string LabelColumnName, string ScoreColumnName, string PredictedLabelColumnName,
        Vision.ImageByteOptions Image, int ScoringBatchSize, int MaxEpochs, long? MaxSteps, int BatchSize, double LearningRate, double WarmupFraction,
        List<string> Answers, TrainingSummary Training);

    private sealed record SamplingStage(double Temperature, int? TopK, double? TopP, long? Seed, List<long[]> StopSequences, ContextOverflow Overflow);

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
                void FlushRun()
                {
                    if (run.Count == 0) return;
                    string folder = $"stages/{stages.Count:D3}/";
                    WriteMlNet(context, zip, folder + "mlnet.zip", new TransformerChain<ITransformer>(run.ToArray()), runInput);
                    stages.Add(new StageEntry("mlnet", folder));
                    run.Clear();
                }
                foreach (var stage in Flatten(model))
                {
                    if (stage is MblmLanguageModelTransformer lm)
                    {
                        FlushRun();
                        string folder = $"stages/{stages.Count:D3}/";
                        WriteLanguageModel(zip, folder, lm);
                        stages.Add(new StageEntry("language-model", folder));
                    }
                    else if (stage is Vision.MblmAnswerClassifierTransformer vqa)
                    {
                        FlushRun();
                        string folder = $"stages/{stages.Count:D3}/";
                        WriteAnswerClassifier(zip, folder, vqa);
                        stages.Add(new StageEntry("answer-classifier", folder));
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
                WriteText(zip, ManifestEntry, JsonSerializer.Serialize(new Manifest(Format, Version, library, stages), Json));
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
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"pipeline file '{path}' does not exist", path);
        using var zip = OpenZip(path);
        var manifestText = ReadText(zip, ManifestEntry, path);
        Manifest manifest;
        try { manifest = JsonSerializer.Deserialize<Manifest>(manifestText, Json) ?? throw new JsonException("empty manifest"); }
        catch (JsonException e) { throw new InvalidDataException($"'{path}': {ManifestEntry} is not a valid manifest: {e.Message}", e); }
        if (manifest.Format != Format)
            throw new InvalidDataException($"'{path}' is not an MBLM pipeline file (format '{manifest.Format}', expected '{Format}')");
        if (manifest.Version > Version)
            throw new InvalidDataException($"'{path}' has pipeline format version {manifest.Version}; this Mblm.MLNet reads up to version {Version} (written by {manifest.Library})");

        ReadMlNet(context, zip, SchemaEntry, path, out inputSchema);
        var stages = new List<ITransformer>();
        try
        {
            foreach (var stage in manifest.Stages)
            {
                switch (stage.Kind)
                {
                    case "mlnet":
                        stages.AddRange(Flatten(ReadMlNet(context, zip, stage.Folder + "mlnet.zip", path, out _)));
                        break;
                    case "language-model":
                        stages.Add(ReadLanguageModel(context, zip, stage.Folder, path));
                        break;
                    case "answer-classifier":
                        stages.Add(ReadAnswerClassifier(context, zip, stage.Folder, path));
                        break;
                    default:
                        throw new InvalidDataException($"'{path}': stage kind '{stage.Kind}' in {stage.Folder} is unknown to this Mblm.MLNet");
                }
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

    private static void WriteLanguageModel(ZipArchive zip, string folder, MblmLanguageModelTransformer lm)
    {
        var o = lm.Options;
        var s = o.Sampling;
        var stage = new LanguageModelStage(o.InputColumnName, o.BitsPerByteColumnName, o.FeaturesColumnName, o.CompletionColumnName,
            o.MaxNewBytes, o.ScoringBatchSize, new SamplingStage(s.Temperature, s.TopK, s.TopP, s.Seed, s.StopSequences.ToList(), s.Overflow),
            o.MaxEpochs, o.MaxSteps, o.BatchSize, o.LearningRate, o.WarmupFraction, o.GradientClipping, lm.Training);
        WriteText(zip, folder + "stage.json", JsonSerializer.Serialize(stage, Json));
        WriteModel(zip, folder, o.ModelConfig, lm.Model);
    }

    private static void WriteModel(ZipArchive zip, string folder, MblmConfig config, MblmModel model)
    {
        WriteText(zip, folder + "model.json", ConfigWriter.ToJson(config));
        var weights = zip.CreateEntry(folder + "model.safetensors", CompressionLevel.NoCompression);
        using var w = weights.Open();
        SafeTensors.Save(model.state_dict(), w);
    }

    private static void WriteAnswerClassifier(ZipArchive zip, string folder, Vision.MblmAnswerClassifierTransformer vqa)
    {
        var o = vqa.Options;
        var stage = new AnswerClassifierStage(o.ImageColumnName, o.QuestionColumnName, o.LabelColumnName, o.ScoreColumnName, o.PredictedLabelColumnName,
            o.Image, o.ScoringBatchSize, o.MaxEpochs, o.MaxSteps, o.BatchSize, o.LearningRate, o.WarmupFraction, vqa.Answers.ToList(), vqa.Training);
        WriteText(zip, folder + "stage.json", JsonSerializer.Serialize(stage, Json));
        WriteModel(zip, folder, o.ModelConfig, vqa.Model);
    }

    private static Vision.MblmAnswerClassifierTransformer ReadAnswerClassifier(MLContext context, ZipArchive zip, string folder, string path)
    {
        AnswerClassifierStage stage;
        try { stage = JsonSerializer.Deserialize<AnswerClassifierStage>(ReadText(zip, folder + "stage.json", path), Json) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new InvalidDataException($"'{path}': {folder}stage.json is not valid: {e.Message}", e); }
        var config = ReadConfig(zip, folder, path);
        var options = new Vision.MblmAnswerClassifierTrainer.Options
        {
            ImageColumnName = stage.ImageColumnName, QuestionColumnName = stage.QuestionColumnName, LabelColumnName = stage.LabelColumnName,
            ScoreColumnName = stage.ScoreColumnName, PredictedLabelColumnName = stage.PredictedLabelColumnName,
            Image = stage.Image,
            ScoringBatchSize = stage.ScoringBatchSize, MaxEpochs = stage.MaxEpochs, MaxSteps = stage.MaxSteps, BatchSize = stage.BatchSize,
            LearningRate = stage.LearningRate, WarmupFraction = stage.WarmupFraction, ModelConfig = config,
        }.Checked();
        var model = ReadModel(context, zip, folder, path, config);
        return new Vision.MblmAnswerClassifierTransformer(options, model, stage.Answers.ToArray(), stage.Training);
    }

    private static MblmConfig ReadConfig(ZipArchive zip, string folder, string path)
    {
        try { return ConfigReader.Parse(ReadText(zip, folder + "model.json", path)).Model; }
        catch (ConfigException e) { throw new InvalidDataException($"'{path}': {folder}model.json: {e.Message}", e); }
    }

    // Builds the module (without disturbing the caller's random stream), loads the weights strictly and places it.
    private static MblmModel ReadModel(MLContext context, ZipArchive zip, string folder, string path, MblmConfig config)
    {
        MblmModel model;
        using (var rng = get_rng_state())
        {
            model = new MblmModel(config);
            set_rng_state(rng);
        }
        try
        {
            using (var bytes = ReadBytes(zip, folder + "model.safetensors", path))
            {
                var tensors = SafeTensors.Load(bytes, $"{path}:{folder}model.safetensors");
                try { ModelWeights.Load(model, tensors, $"{path}:{folder}model.safetensors"); }
                finally { foreach (var t in tensors.Values) t.Dispose(); }
            }
            model.to(DeviceChoice.For(context));
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static MblmLanguageModelTransformer ReadLanguageModel(MLContext context, ZipArchive zip, string folder, string path)
    {
        LanguageModelStage stage;
        try { stage = JsonSerializer.Deserialize<LanguageModelStage>(ReadText(zip, folder + "stage.json", path), Json) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new InvalidDataException($"'{path}': {folder}stage.json is not valid: {e.Message}", e); }
        var config = ReadConfig(zip, folder, path);
        var s = stage.Sampling;
        var options = new MblmLanguageModelTrainer.Options
        {
            InputColumnName = stage.InputColumnName,
            BitsPerByteColumnName = stage.BitsPerByteColumnName,
            FeaturesColumnName = stage.FeaturesColumnName,
            CompletionColumnName = stage.CompletionColumnName,
            ModelConfig = config,
            MaxNewBytes = stage.MaxNewBytes,
            ScoringBatchSize = stage.ScoringBatchSize,
            Sampling = new SamplingOptions { Temperature = s.Temperature, TopK = s.TopK, TopP = s.TopP, Seed = s.Seed, StopSequences = s.StopSequences, Overflow = s.Overflow },
            MaxEpochs = stage.MaxEpochs,
            MaxSteps = stage.MaxSteps,
            BatchSize = stage.BatchSize,
            LearningRate = stage.LearningRate,
            WarmupFraction = stage.WarmupFraction,
            GradientClipping = stage.GradientClipping,
        }.Checked();

        return new MblmLanguageModelTransformer(context, options, ReadModel(context, zip, folder, path, config), stage.Training);
    }

    private static ZipArchive OpenZip(string path)
    {
        try { return ZipFile.OpenRead(path); }
        catch (InvalidDataException e) { throw new InvalidDataException($"'{path}' is not an MBLM pipeline file (not a zip archive)", e); }
    }

    private static void WriteText(ZipArchive zip, string entry, string text)
    {
        using var w = new StreamWriter(zip.CreateEntry(entry, CompressionLevel.Optimal).Open());
        w.Write(text);
    }

    private static string ReadText(ZipArchive zip, string entry, string path)
    {
        using var r = new StreamReader(Entry(zip, entry, path).Open());
        return r.ReadToEnd();
    }

    private static MemoryStream ReadBytes(ZipArchive zip, string entry, string path)
    {
        var buffer = new MemoryStream();
        using (var s = Entry(zip, entry, path).Open()) s.CopyTo(buffer);
        buffer.Position = 0;
        return buffer;
    }

    private static ZipArchiveEntry Entry(ZipArchive zip, string entry, string path) =>
        zip.GetEntry(entry) ?? throw new InvalidDataException($"'{path}' is missing the entry '{entry}' (not an MBLM pipeline file, or a damaged one)");
}
