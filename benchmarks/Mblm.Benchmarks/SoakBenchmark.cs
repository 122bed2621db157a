using System.Diagnostics;
using Mblm.Fuzz.Core;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.Benchmarks;

/// <summary>
/// <c>soak</c>: many predictions through one PredictionEngine and through batch Transform over a tiny trained language
/// model that generates (MaxNewBytes &gt; 0). After a warm-up and at the end (each after a full garbage collection) it
/// reads the process RSS (VmRSS) and the live tensors: this thread's DisposeScope count (what the leak tests assert) and
/// TorchSharp's process-wide <c>Tensor.TotalCount</c>. Passes when RSS stays within 5 % of the warm-up value and no
/// tensor is left alive.
/// </summary>
internal static class SoakBenchmark
{
    private sealed class Output
    {
        public float BitsPerByte { get; set; }
        [VectorType(16)]
        public float[] Features { get; set; } = [];
        public string Completion { get; set; } = "";
    }

    private sealed record Measure(double RssMiB, long ThreadLive, long TotalLive, long TotalBeforeGc);

    private static Measure Now()
    {
        long before = TorchSharp.torch.Tensor.TotalCount;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        double rss = 0;
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                rss = double.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024;
        return new Measure(rss, TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount, TorchSharp.torch.Tensor.TotalCount, before);
    }

    public static int Run(Options o)
    {
        int n = o.Int("predictions", 10_000), warmup = o.Int("warmup", 500);
        var ml = new MLContext(seed: 1);
        var rows = Enumerable.Range(0, n).Select(i => FuzzSeeds.Corpus[i % FuzzSeeds.Corpus.Length] + (i % 3 == 0 ? $" #{i}" : "")).ToArray();
        var clock = Stopwatch.StartNew();
        var train = ml.Data.LoadFromEnumerable(FuzzSeeds.Corpus.Select(t => new FuzzTextRow { Text = t }).ToList());
        using var model = ml.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options
        {
            ModelConfig = FuzzSeeds.Config, MaxSteps = 20, BatchSize = 8, LearningRate = 3e-3, MaxNewBytes = 8, ScoringBatchSize = 16,
        }).Fit(train);
        Console.WriteLine($"soak: model {FuzzSeeds.Config.CountParameters():N0} parameters, trained in {clock.Elapsed.TotalSeconds:F1} s; " +
                          $"{n:N0} predictions after {warmup:N0} warm-up ones, MaxNewBytes 8; measures after a full GC");

        var results = new List<(string Phase, int Count, double Seconds, Measure Start, Measure End, List<double> Trajectory)>();

        // One PredictionEngine, row after row.
        using (var engine = ml.Model.CreatePredictionEngine<FuzzTextRow, Output>(model, new PredictionEngineOptions { OwnsTransformer = false }))
        {
            var input = new FuzzTextRow();
            for (int i = 0; i < warmup; i++) { input.Text = rows[i % rows.Length]; engine.Predict(input); }
            var start = Now();
            var trajectory = new List<double>();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                input.Text = rows[i];
                var p = engine.Predict(input);
                if (p.Completion.Length == 0 && p.Features.Length != 16) throw new InvalidOperationException("no prediction");
                if ((i + 1) % Math.Max(1, n / 10) == 0) trajectory.Add(Rss());
            }
            double seconds = sw.Elapsed.TotalSeconds;
            results.Add(("PredictionEngine", n, seconds, start, Now(), trajectory));
        }

        // Batch Transform over all rows, reading every column.
        {
            void Pass(int count)
            {
                var data = ml.Data.LoadFromEnumerable(rows.Take(count).Select(t => new FuzzTextRow { Text = t }));
                var scored = model.Transform(data);
                using var cursor = scored.GetRowCursor(scored.Schema);
                var bpb = cursor.GetGetter<float>(scored.Schema["BitsPerByte"]);
                var feats = cursor.GetGetter<VBuffer<float>>(scored.Schema["Features"]);
                var completion = cursor.GetGetter<ReadOnlyMemory<char>>(scored.Schema["Completion"]);
                float b = 0;
                VBuffer<float> f = default;
                ReadOnlyMemory<char> c = default;
                while (cursor.MoveNext()) { bpb(ref b); feats(ref f); completion(ref c); }
            }
            Pass(Math.Min(warmup, n));
            var start = Now();
            var sw = Stopwatch.StartNew();
            Pass(n);
            double seconds = sw.Elapsed.TotalSeconds;
            results.Add(("batch Transform", n, seconds, start, Now(), []));
        }

        Console.WriteLine();
        Console.WriteLine("| phase | predictions | seconds | ms / prediction | RSS after warm-up MiB | RSS at end MiB | RSS change | live tensors, this thread (warm-up → end) | " +
            "Tensor.TotalCount (warm-up → end; end before GC) | result |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |");
        bool ok = true;
        foreach (var r in results)
        {
            double change = (r.End.RssMiB - r.Start.RssMiB) / r.Start.RssMiB;
            bool pass = change <= 0.05 && r.End.ThreadLive <= r.Start.ThreadLive && r.End.TotalLive <= r.Start.TotalLive;
            ok &= pass;
            Console.WriteLine($"| {r.Phase} | {r.Count:N0} | {r.Seconds:F1} | {1000 * r.Seconds / r.Count:F2} | {r.Start.RssMiB:F0} | {r.End.RssMiB:F0} | {change * 100:+0.0;-0.0} % | " +
                              $"{r.Start.ThreadLive} → {r.End.ThreadLive} | {r.Start.TotalLive} → {r.End.TotalLive} ({r.End.TotalBeforeGc}) | {(pass ? "pass" : "FAIL")} |");
            if (r.Trajectory.Count > 0) Console.WriteLine($"  RSS every {Math.Max(1, r.Count / 10):N0} predictions (MiB, no GC): {string.Join(", ", r.Trajectory.Select(x => x.ToString("F0")))}");
        }
        Console.WriteLine(ok ? "\nPASS: RSS flat within 5 % after warm-up, no live tensors left" : "\nFAIL: RSS grew more than 5 % or tensors were left alive");
        return ok ? 0 : 1;
    }

    private static double Rss()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return double.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024;
        return double.NaN;
    }
}
