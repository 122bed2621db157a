using System.Diagnostics;
using System.Text;
using Mblm.Config;
using Mblm.Examples;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Mblm.MLNet.Vision;
using Microsoft.ML;

namespace Mblm.Benchmarks;

/// <summary>
/// Knowledge transfer, measured over seeds. The paper reports that text pretraining helps CLEVR-style VQA. The run has
/// three steps:
/// <list type="number">
/// <item><description>Pretrain one language model on real text: this repository's README, docs and sources, plus
/// <c>../shared/data/tinyshakespeare.txt</c>.</description></item>
/// <item><description>Fine-tune the VQA answer classifier and the text classifier, from scratch and from that language
/// model (<c>TransferFrom</c>), once per seed.</description></item>
/// <item><description>Report held-out accuracy for each setting as mean ± standard deviation over the seeds, with every
/// seed's value.</description></item>
/// </list>
/// Pretraining runs once, with seed 1. For each seed, both settings see the same data and the same fine-tuning seed.
/// </summary>
internal static class TransferBenchmark
{
    public static void Run(Options o)
    {
        int seeds = o.Int("seeds", 3), pretrainSteps = o.Int("pretrain-steps", 600), scenes = o.Int("scenes", 400), epochs = o.Int("epochs", 4);
        string shared = o.Str("shared", "../shared");
        var clock = Stopwatch.StartNew();

        // The shared model shape: answer classifier and language model must match (the vocabulary grows on transfer).
        var image = new ImageByteOptions { ResizeWidth = 16, ResizeHeight = 12, Levels = 8 };
        var config = MblmPresets.SmallVqa with { SeqLens = [128, 8] };   // 1,024 tokens: 576 image bytes + question + answer

        // 1. Pretraining.
        var ml = new MLContext(seed: 1);
        var text = PretrainingText(shared);
        var rows = TextRows.Split(text, 1000).Select(t => new Row { Text = t }).ToList();
        var lmData = ml.Data.LoadFromEnumerable(rows);
        using var lm = ml.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options
        {
            ModelConfig = config with { NumTokens = 257 }, MaxEpochs = 1000, MaxSteps = pretrainSteps, BatchSize = 16, LearningRate = 2e-3,
        }).Fit(lmData);
        string lmPath = Path.Combine(Path.GetTempPath(), $"mblm-transfer-lm-{Environment.ProcessId}.zip");
        ml.Mblm().SaveModel(lm, lmData.Schema, lmPath);
        var lmMetrics = ml.Mblm().Evaluate(lm.Transform(ml.Data.LoadFromEnumerable(rows.Take(64))));
        Console.WriteLine($"pretraining: {Encoding.UTF8.GetByteCount(text):N0} bytes in {rows.Count} rows, {lm.Training.Steps} steps, " +
                          $"final loss {lm.Training.FinalLoss / Math.Log(2):F3} bits/byte ({clock.Elapsed.TotalMinutes:F1} min); " +
                          $"{lmMetrics.BitsPerByte:F3} bits/byte on 64 of its rows");

        // 2. VQA fine-tuning, from scratch and transferred, per seed.
        var train = new ClevrLikeGenerator(seed: 11).Generate(scenes, 3);
        var test = new ClevrLikeGenerator(seed: 12).Generate(Math.Max(50, scenes / 4), 3);
        var results = new Dictionary<string, List<double>>();
        for (int seed = 1; seed <= seeds; seed++)
        {
            foreach (bool transfer in new[] { false, true })
            {
                var ctx = new MLContext(seed: seed);
                var options = new MblmAnswerClassifierTrainer.Options
                {
                    LabelColumnName = "Label", Image = image, ModelConfig = config, MaxEpochs = epochs, BatchSize = 16, LearningRate = 2e-3,
                    TransferFrom = transfer ? lmPath : null,
                };
                var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", "Answer", keyData: ClevrLikeGenerator.AnswerKeyData(ctx))
                    .Append(ctx.Mblm().AnswerClassifier(options));
                var fitClock = Stopwatch.StartNew();
                var model = pipeline.Fit(ClevrLikeGenerator.ToDataView(ctx, train));
                var metrics = ctx.MulticlassClassification.Evaluate(model.Transform(ClevrLikeGenerator.ToDataView(ctx, test)), "Label");
                ((IDisposable)model).Dispose();
                string key = $"VQA answer classifier, {(transfer ? "from the text LM" : "from scratch")}";
                (results.TryGetValue(key, out var list) ? list : results[key] = []).Add(metrics.MicroAccuracy);
                Console.WriteLine($"  seed {seed}: {key}: accuracy {metrics.MicroAccuracy:P1}, log-loss {metrics.LogLoss:F3} ({fitClock.Elapsed.TotalSeconds:F0} s)");
            }
        }
        if (o.Str("keep-lm", "") is { Length: > 0 } keep)
        {
            File.Copy(lmPath, keep, overwrite: true);
            Console.WriteLine($"pretrained language model kept at {Path.GetFullPath(keep)} (for examples/TextClassification --transfer-from)");
        }
        File.Delete(lmPath);

        Console.WriteLine();
        Console.WriteLine($"| task, setting | held-out accuracy, mean ± sd over {seeds} seeds | per seed |");
        Console.WriteLine("| --- | --- | --- |");
        foreach (var (key, values) in results)
        {
            double mean = values.Average();
            double sd = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1)) : 0;
            Console.WriteLine($"| {key} | {mean:P1} ± {sd * 100:F1} | {string.Join(", ", values.Select(v => v.ToString("P1")))} |");
        }
        Console.WriteLine($"total {clock.Elapsed.TotalMinutes:F1} min");
    }

    /// <summary>This repository's README, docs and C# sources, plus tinyshakespeare when ../shared is present.</summary>
    private static string PretrainingText(string shared)
    {
        var root = new DirectoryInfo(Environment.CurrentDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "MblmMLNet.sln"))) root = root.Parent;
        if (root is null) throw new DirectoryNotFoundException("run from a clone of the repository: pretraining reads its README, docs and sources");
        var files = new[] { Path.Combine(root.FullName, "README.md") }
            .Concat(Directory.GetFiles(Path.Combine(root.FullName, "docs"), "*.md"))
            .Concat(Directory.GetFiles(Path.Combine(root.FullName, "src"), "*.cs", SearchOption.AllDirectories).Where(f => !f.Contains("/obj/") && !f.Contains("/bin/")))
            .ToList();
        string shakespeare = Path.Combine(shared, "data", "tinyshakespeare.txt");
        if (File.Exists(shakespeare)) files.Add(shakespeare);
        return string.Join("\n\n", files.Select(File.ReadAllText));
    }

    private sealed class Row
    {
        public string Text { get; set; } = "";
    }
}
