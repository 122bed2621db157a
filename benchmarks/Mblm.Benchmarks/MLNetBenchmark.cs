using System.Diagnostics;
using System.Text;
using Mblm.Config;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Mblm.Model;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Data;
using static TorchSharp.torch;

namespace Mblm.Benchmarks;

/// <summary>
/// The ML.NET layer's cost: (1) Fit through an ML.NET pipeline vs the raw training engine on the same rows, config, steps and
/// seed (target overhead ≤ 5 %); (2) Transform throughput, rows/s, batched vs one row at a time through a PredictionEngine.
/// Data: tinyshakespeare from ../shared when present (else this repository's README), in rows of whole lines ≤ 512 bytes.
/// </summary>
internal static class MLNetBenchmark
{
    public sealed class Row
    {
        public string Text { get; set; } = "";
    }

    public sealed class Scored
    {
        public float BitsPerByte { get; set; }
    }

    public static void Run(Options opts)
    {
        int steps = opts.Int("steps", 60), reps = opts.Int("reps", 2), scoreRows = opts.Int("rows", 256);
        int kib = opts.Int("kib", 256);
        string file = opts.Str("data", FindData());
        string text = File.ReadAllText(file);
        text = text[..Math.Min(text.Length, kib * 1024)];
        var rows = TextRows.Split(text, 512);
        var config = MblmPresets.Small;
        Console.WriteLine($"data: {file}, {Encoding.UTF8.GetByteCount(text):N0} bytes in {rows.Count} rows; model Small ({config.CountParameters():N0} parameters); " +
                          $"{steps} steps of 16 windows per fit; {reps} fits each, alternating");

        if (!opts.Has("scoring-only"))
        {
            var raw = new List<double>();
            var ml = new List<double>();
            Fit(rows, config, 3, viaMlNet: false); // warm-up (JIT, allocator)
            Fit(rows, config, 3, viaMlNet: true);
            for (int r = 0; r < reps; r++)
            {
                raw.Add(Fit(rows, config, steps, viaMlNet: false));
                ml.Add(Fit(rows, config, steps, viaMlNet: true));
            }
            double rawS = Stats.Median(raw), mlS = Stats.Median(ml);
            Console.WriteLine();
            Console.WriteLine("| fit | seconds (each run) | median s | vs raw |");
            Console.WriteLine("| --- | --- | --- | --- |");
            Console.WriteLine($"| raw Trainer (rows already as bytes) | {string.Join(", ", raw.Select(x => x.ToString("F2")))} | {rawS:F2} | 1.000 |");
            Console.WriteLine($"| ML.NET pipeline Fit (IDataView → bytes → Trainer) | {string.Join(", ", ml.Select(x => x.ToString("F2")))} | {mlS:F2} | {mlS / rawS:F3} |");
            Console.WriteLine($"ML.NET overhead: {(mlS / rawS - 1) * 100:+0.0;-0.0} % (target ≤ 5 %)");
        }


        // Transform throughput.
        var context = new MLContext(seed: 1);
        var scoringRows = Enumerable.Range(0, scoreRows).Select(i => rows[i % rows.Count]).ToList();
        var data = context.Data.LoadFromEnumerable(scoringRows.Select(t => new Row { Text = t }).ToList());
        using var model = context.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options { ModelConfig = config, MaxSteps = 1 }).Fit(data);
        Console.WriteLine();
        Console.WriteLine($"| scoring {scoreRows} rows (mean {scoringRows.Average(r => Encoding.UTF8.GetByteCount(r)):F0} bytes) | seconds | rows/s | vs one row at a time |");
        Console.WriteLine("| --- | --- | --- | --- |");
        var oneAtATime = Time(() =>
        {
            using var engine = context.Model.CreatePredictionEngine<Row, Scored>(model, new PredictionEngineOptions { OwnsTransformer = false });
            foreach (var r in scoringRows) engine.Predict(new Row { Text = r });
        });
        foreach (int batch in new[] { 1, 4, 16, 64, 256 })
        {
            using var batched = context.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options { ModelConfig = config, MaxSteps = 1, ScoringBatchSize = batch }).Fit(data);
            ModelCopy(model, batched);
            double s = Time(() => batched.Transform(data).GetColumn<float>("BitsPerByte").ToArray());
            Console.WriteLine($"| Transform, ScoringBatchSize {batch} | {s:F2} | {scoreRows / s:F1} | {oneAtATime / s:F2}× |");
        }
        Console.WriteLine($"| PredictionEngine, one row at a time | {oneAtATime:F2} | {scoreRows / oneAtATime:F1} | 1.00× |");

        // The cause of slower large batches, isolated: the same rows through DocumentScorer, 64 per call, with forwards cut by
        // count alone (each padded to the longest of its 64 windows) and packed by the position budget (the default).
        var docs = scoringRows.Select(Encoding.UTF8.GetBytes).ToList();
        var countOnly = new Mblm.Inference.DocumentScorer(model.Model, 64, tokensPerForward: long.MaxValue);
        var packed = new Mblm.Inference.DocumentScorer(model.Model, 64);
        double ScoreAll(Mblm.Inference.DocumentScorer scorer) => Time(() => { foreach (var call in docs.Chunk(64)) scorer.Score(call, features: true); });
        ScoreAll(packed); // warm-up
        var a = new List<double>(); var b = new List<double>();
        for (int r = 0; r < 3; r++) { a.Add(ScoreAll(countOnly)); b.Add(ScoreAll(packed)); }
        Console.WriteLine($"| DocumentScorer, 64 rows per call, forwards cut by count only | {Stats.Median(a):F2} | {scoreRows / Stats.Median(a):F1} | |");
        Console.WriteLine($"| DocumentScorer, 64 rows per call, forwards packed (≤ {packed.TokensPerForward:N0} positions) | {Stats.Median(b):F2} | {scoreRows / Stats.Median(b):F1} | |");
    }

    private static void ModelCopy(MblmLanguageModelTransformer from, MblmLanguageModelTransformer to) =>
        Mblm.Weights.ModelWeights.Load(to.Model, from.Model.state_dict());

    private static double Fit(List<string> rows, MblmConfig config, int steps, bool viaMlNet)
    {
        var clock = Stopwatch.StartNew();
        if (viaMlNet)
        {
            var context = new MLContext(seed: 1);
            var data = context.Data.LoadFromEnumerable(rows.Select(t => new Row { Text = t }).ToList());
            using var model = context.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options { ModelConfig = config, MaxSteps = steps, MaxEpochs = 1000 }).Fit(data);
        }
        else
        {
            var docs = rows.Select(Encoding.UTF8.GetBytes).ToList();
            manual_seed(1);
            using var model = new MblmModel(config);
            new Trainer(model, new TrainerOptions { Steps = steps, BatchSize = 16, LearningRate = 3e-3, Seed = 1, Shuffle = true })
                .Train(new DocumentSource(docs, (int)config.MaxContext));
        }
        return clock.Elapsed.TotalSeconds;
    }

    private static double Time(Action a)
    {
        var clock = Stopwatch.StartNew();
        a();
        return clock.Elapsed.TotalSeconds;
    }

    internal static string FindData()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string shared = Path.Combine(dir.FullName, "..", "shared", "data", "tinyshakespeare.txt");
            if (File.Exists(Path.Combine(dir.FullName, "MblmMLNet.sln")))
                return File.Exists(shared) ? Path.GetFullPath(shared) : Path.Combine(dir.FullName, "README.md");
        }
        return "README.md";
    }
}
