using System.Diagnostics;
using Mblm.Config;
using Mblm.MLNet.Text;
using Mblm.Pretraining;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace TextClassification;

/// <summary>A file fragment as ML.NET reads it: its bytes, the same bytes as Latin-1 text, and its kind.</summary>
internal sealed class FragmentRow
{
    [VectorType]
    public byte[] Bytes { get; set; } = [];
    public string Latin1 { get; set; } = "";
    public string Class { get; set; } = "";
}

/// <summary>
/// File-fragment kind: which kind of file a fragment of <c>N</c> bytes comes from, where bytes are all there is (no
/// magic numbers: fragments start past each file's first 512 bytes). Files are installed ones — ELF shared objects, .NET
/// assemblies, Python bytecode, gettext catalogs, PNG images, plain-text documentation, JAR archives, JavaScript —
/// deduplicated by content and split by file (a stable hash of the path: a file is wholly in training or held out).
/// Models: byte unigram + hashed bigram histograms into SDCA and LightGbm, FeaturizeText over the bytes read as Latin-1,
/// and the MBLM text classifier over the byte vector (from scratch, and from a pretrained model with <c>--pretrained</c>).
/// </summary>
internal static class Fragments
{
    private const int Skip = 512, BigramBuckets = 4096;

    private static IReadOnlyList<CorpusKind> Kinds { get; } =
    [
        new("elf", 1, ["/usr/lib/x86_64-linux-gnu"], p => p.Contains(".so", StringComparison.Ordinal)),
        new("dotnet", 1, ["/usr/share/dotnet/shared"], p => p.EndsWith(".dll", StringComparison.Ordinal)),
        new("pyc", 1, ["/usr/lib/python3"], p => p.EndsWith(".pyc", StringComparison.Ordinal)),
        new("gettext", 1, ["/usr/share/locale"], p => p.EndsWith(".mo", StringComparison.Ordinal)),
        new("png", 1, ["/usr/share", "/usr/lib"], p => p.EndsWith(".png", StringComparison.Ordinal)),
        new("text", 1, ["/usr/share/doc"], p => Path.GetFileName(p) is var n && (n == "copyright" || n.EndsWith(".txt", StringComparison.Ordinal) || n.EndsWith(".md", StringComparison.Ordinal))),
        new("jar", 1, ["/usr/share", "/usr/lib"], p => p.EndsWith(".jar", StringComparison.Ordinal)),
        new("javascript", 1, ["/usr/share", "/usr/lib"], p => p.EndsWith(".js", StringComparison.Ordinal)),
    ];

    /// <summary>Training and held-out fragments of <paramref name="bytes"/> bytes, balanced over the kinds that have files on both sides.</summary>
    public static (FragmentRow[] Train, FragmentRow[] Test, string Summary) Build(int bytes, int trainRows, int testRows, int seed)
    {
        var manifest = CorpusManifest.Build(Kinds, new CorpusOptions { HeldOutPercent = 25, MaxBytesPerKind = 96L << 20, MaxFileBytes = 16L << 20 });
        var usable = manifest.Files.Where(f => f.Size >= Skip + bytes).GroupBy(f => f.Kind)
            .Where(g => g.Any(f => f.HeldOut) && g.Any(f => !f.HeldOut)).ToDictionary(g => g.Key, g => g.ToList());
        if (usable.Count < 2) throw new InvalidOperationException($"fewer than 2 kinds of installed files have fragments of {bytes} bytes on both sides of the split");
        var rng = new Random(seed);
        List<FragmentRow> Draw(bool heldOut, int perKind) =>
            usable.OrderBy(k => k.Key, StringComparer.Ordinal).SelectMany(kind =>
            {
                var files = kind.Value.Where(f => f.HeldOut == heldOut).ToList();
                // Files drawn uniformly (not by size: many files rather than many fragments of a few large ones).
                return Enumerable.Range(0, perKind).Select(_ => files[rng.Next(files.Count)]).GroupBy(f => f.Path).SelectMany(g =>
                {
                    var content = g.First().ReadContent(verify: false);
                    return g.Select(_ =>
                    {
                        int at = Skip + rng.Next(content.Length - Skip - bytes + 1);
                        var fragment = content.AsSpan(at, bytes).ToArray();
                        return new FragmentRow { Bytes = fragment, Latin1 = string.Create(bytes, fragment, (s, b) => { for (int i = 0; i < b.Length; i++) s[i] = (char)b[i]; }), Class = kind.Key };
                    }).ToList();
                });
            }).OrderBy(_ => rng.Next()).ToList();
        var train = Draw(false, Math.Max(1, trainRows / usable.Count));
        var test = Draw(true, Math.Max(1, testRows / usable.Count));
        string files = string.Join(", ", usable.Keys.Order(StringComparer.Ordinal).Select(k => $"{k} {usable[k].Count(f => !f.HeldOut)}+{usable[k].Count(f => f.HeldOut)} files"));
        string summary = $"file-fragment kind, {bytes} B: {usable.Count} kinds ({files}), " +
                         $"{train.Count} training and {test.Count} held-out fragments from past byte {Skip} of each file";
        return (train.ToArray(), test.ToArray(), summary);
    }

    /// <summary>Byte unigram frequencies (256) and hashed bigram frequencies (<see cref="BigramBuckets"/>), each summing to 1.</summary>
    internal sealed class Histogram
    {
        [VectorType(256 + BigramBuckets)]
        public float[] Features { get; set; } = [];
    }

    private static void Histograms(FragmentRow row, Histogram output)
    {
        var f = new float[256 + BigramBuckets];
        var b = row.Bytes;
        for (int i = 0; i < b.Length; i++) f[b[i]] += 1f / b.Length;
        for (int i = 1; i < b.Length; i++) f[256 + (int)((uint)(b[i - 1] * 40503 + b[i] * 2654435761u) % BigramBuckets)] += 1f / (b.Length - 1);
        output.Features = f;
    }

    /// <summary>Runs every model on fragments of each size and training-row count; adds rows to <paramref name="results"/>.</summary>
    public static void Run(int[] sizes, int[] rowCounts, int seed, string? pretrained, int epochs, HashSet<string> models, List<Result> results)
    {
        foreach (int size in sizes)
            foreach (int rows in rowCounts)
            {
                var clock = Stopwatch.StartNew();
                var (train, test, summary) = Build(size, rows, Math.Max(rows / 4, 200), seed);
                string task = $"fragment kind, {size} B, {train.Length} rows";
                Console.WriteLine($"\n{summary}\n  built in {clock.Elapsed.TotalSeconds:F0} s");
                void Fit(string name, Func<MLContext, IEstimator<ITransformer>> pipeline)
                {
                    var ml = new MLContext(seed);
                    IDataView trainView = ml.Data.LoadFromEnumerable(train), testView = ml.Data.LoadFromEnumerable(test);
                    var sw = Stopwatch.StartNew();
                    var model = pipeline(ml).Fit(trainView);
                    double fit = sw.Elapsed.TotalSeconds;
                    sw.Restart();
                    var metrics = ml.MulticlassClassification.Evaluate(model.Transform(testView));
                    double scoring = sw.Elapsed.TotalSeconds;
                    (model as IDisposable)?.Dispose();
                    var r = new Result(task, name, metrics.MicroAccuracy, metrics.MacroAccuracy, metrics.LogLoss, fit, test.Length / scoring);
                    results.Add(r);
                    Console.WriteLine($"    {name}: accuracy {r.Accuracy:F3}, macro {r.MacroAccuracy:F3}, log-loss {r.LogLoss:F3}, fit {r.FitSeconds:F1} s, {r.RowsPerSecond:F0} rows/s");
                }
                IEstimator<ITransformer> Label(MLContext ml) => ml.Transforms.Conversion.MapValueToKey("Label", "Class");
                IEstimator<ITransformer> Bytes(MLContext ml) => Label(ml).Append(ml.Transforms.CustomMapping<FragmentRow, Histogram>(Histograms, contractName: null)).AppendCacheCheckpoint(ml);
                if (models.Contains("sdca")) Fit("byte histograms + SdcaMaximumEntropy", ml => Bytes(ml).Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy()));
                if (models.Contains("lightgbm")) Fit("byte histograms + LightGbm", ml => Bytes(ml).Append(ml.MulticlassClassification.Trainers.LightGbm()));
                if (models.Contains("featurize"))
                    Fit("FeaturizeText (Latin-1) + SdcaMaximumEntropy", ml => Label(ml).Append(ml.Transforms.Text.FeaturizeText("Features", "Latin1")).AppendCacheCheckpoint(ml)
                        .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy()));
                var options = new MblmTextClassifierTrainer.Options { TextColumnName = "Bytes", MaxEpochs = epochs };
                // Past the classifier's automatic context (4,096 tokens with the class), the context is given: the shape sized to the fragment.
                static MblmConfig? Sized(MblmConfig shape, int size) => size + 16 <= MblmTextClassifierTrainer.Options.MaxAutoContext ? null
                    : shape with { NumTokens = 260, SeqLens = [(int)((size + 16 + shape.PatchSize - 1) / shape.PatchSize), .. shape.SeqLens.Skip(1)] };
                if (models.Contains("mblm"))
                    Fit("MBLM text classifier (bytes)", ml => Label(ml).Append(ml.MulticlassClassification.Trainers.MblmTextClassifier(options with
                    {
                        ModelConfig = Sized(MblmTextClassifierTrainer.BaseModelConfig, size), Progress = new Bar("MBLM"),
                    })));
                if (pretrained is not null && (models.Contains("mblm") || models.Contains("none") || models.Contains("mblm-pretrained")))
                    Fit($"MBLM text classifier (bytes), from {Path.GetFileName(pretrained.TrimEnd('/'))}", ml => Label(ml).Append(ml.MulticlassClassification.Trainers.MblmTextClassifier(options with
                    {
                        Pretrained = pretrained, ModelConfig = Sized(MblmPretrained.LoadConfig(pretrained), size), Progress = new Bar("MBLM pretrained"),
                    })));
                // Hybrid: the classifier's pooled features (from the pretrained model when given) beside the byte histograms, into LightGbm.
                if (models.Contains("hybrid"))
                    Fit($"MBLM features{(pretrained is null ? "" : $" ({Path.GetFileName(pretrained.TrimEnd('/'))})")} + byte histograms + LightGbm", ml => Label(ml)
                        .Append(ml.MulticlassClassification.Trainers.MblmTextClassifier(options with
                        {
                            Pretrained = pretrained,
                            ModelConfig = Sized(pretrained is null ? MblmTextClassifierTrainer.BaseModelConfig : MblmPretrained.LoadConfig(pretrained), size),
                            FeaturesColumnName = "MblmFeatures", ScoreColumnName = "MblmScore", PredictedLabelColumnName = "MblmLabel", Progress = new Bar("MBLM hybrid"),
                        }))
                        .Append(ml.Transforms.CustomMapping<FragmentRow, Histogram>(Histograms, contractName: null))
                        .Append(ml.Transforms.Concatenate("Features", "Features", "MblmFeatures"))
                        .AppendCacheCheckpoint(ml)
                        .Append(ml.MulticlassClassification.Trainers.LightGbm()));
            }
    }
}
