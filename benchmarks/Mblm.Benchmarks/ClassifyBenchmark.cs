using System.Diagnostics;
using Mblm.MLNet;
using Mblm.MLNet.Text;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.Benchmarks;

/// <summary>
/// Scoring speed of the pooled-head text classifier: rows/s of the raw scorer (<see cref="PooledClassScorer"/>), of batch
/// Transform at several ScoringBatchSize values, and ms a row through a PredictionEngine — for the default model sized to
/// the data and for the shipped base model's shape. Rows: lines of the data file (tinyshakespeare when ../shared is there,
/// else the README) joined to 20–200 bytes, as the text benchmark's messages. Weights come from a 2-step fit: speed does not
/// depend on them.
/// </summary>
internal static class ClassifyBenchmark
{
    public sealed class Row
    {
        public string Text { get; set; } = "";
        public string Kind { get; set; } = "";
    }

    public sealed class Prediction
    {
        public uint PredictedLabel { get; set; }
    }

    public static void Run(Options opts)
    {
        int count = opts.Int("rows", 600), reps = opts.Int("reps", 3);
        var batches = opts.Str("batches", "16,64,256").Split(',').Select(int.Parse).ToArray();
        var rng = new Random(1);
        var lines = File.ReadAllLines(MLNetBenchmark.FindData()).Where(l => l.Trim().Length > 0).ToArray();
        var rows = new List<Row>();
        for (int i = 0; rows.Count < count; i++)
        {
            int target = rng.Next(20, 201);
            var text = "";
            while (text.Length < target) text += lines[rng.Next(lines.Length)].Trim() + " ";
            rows.Add(new Row { Text = text[..target], Kind = $"k{i % 8}" });
        }
        Console.WriteLine($"{rows.Count} rows of 20–200 bytes (mean {rows.Average(r => r.Text.Length):F0}), 8 classes; best of {reps} passes");
        Console.WriteLine("| model | parameters | raw scorer rows/s (batch 64) | " + string.Join(" | ", batches.Select(b => $"Transform rows/s, batch {b}")) + " | PredictionEngine ms/row |");
        Console.WriteLine("| --- | ---: | ---: |" + string.Concat(batches.Select(_ => " ---: |")) + " ---: |");
        Measure("default (sized to the data)", null, rows, batches, reps);
        string? basePath = null;
        try { basePath = Pretraining.MblmPretrained.Resolve("mblm-base"); }
        catch (Exception e) when (e is IOException or ArgumentException) { Console.WriteLine($"mblm-base not found ({e.Message}): its row is left out"); }
        if (basePath is not null) Measure("from mblm-base", basePath, rows, batches, reps);
    }

    private static void Measure(string name, string? pretrained, List<Row> rows, int[] batches, int reps)
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(rows);
        // ScoringBatchSize is a setting of the fitted stage: one 2-step fit per batch size (same seed, same model).
        TransformerChain<MblmTextClassifierTransformer> Fit(int batch) => ml.Transforms.Conversion.MapValueToKey("Label", "Kind")
            .Append(ml.MulticlassClassification.Trainers.MblmTextClassifier(new MblmTextClassifierTrainer.Options
            {
                MaxSteps = 2, Pretrained = pretrained, ValidationFraction = 0, ScoringBatchSize = batch,
            }))
            .Fit(data);
        double Best(Action pass)
        {
            pass();
            double best = double.MaxValue;
            for (int r = 0; r < reps; r++)
            {
                var clock = Stopwatch.StartNew();
                pass();
                best = Math.Min(best, clock.Elapsed.TotalSeconds);
            }
            return best;
        }
        using var model = Fit(64);
        var classifier = model.LastTransformer;
        var bytes = rows.Select(r => System.Text.Encoding.UTF8.GetBytes(r.Text)).ToList();
        double raw = rows.Count / Best(() => classifier.Score(bytes));
        var transform = new List<double>();
        foreach (int batch in batches)
        {
            using var m = Fit(batch);
            transform.Add(rows.Count / Best(() => { foreach (var _ in m.Transform(data).GetColumn<uint>("PredictedLabel")) { } }));
        }
        using var engine = ml.Model.CreatePredictionEngine<Row, Prediction>(model, new PredictionEngineOptions { OwnsTransformer = false });
        int n = Math.Min(200, rows.Count);
        double engineMs = Best(() => { foreach (var r in rows.Take(n)) engine.Predict(r); }) * 1000 / n;
        Console.WriteLine($"| {name} | {classifier.ModelConfig.CountParameters():N0} | {raw:F0} | {string.Join(" | ", transform.Select(t => t.ToString("F0")))} | {engineMs:F2} |");
    }
}
