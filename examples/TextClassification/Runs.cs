using System.Diagnostics;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Mblm.MLNet.Text;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace TextClassification;

/// <summary>One row of the table.</summary>
internal sealed record Result(string Task, string Model, double Accuracy, double MacroAccuracy, double LogLoss, double FitSeconds, double RowsPerSecond)
{
    /// <summary>Mean milliseconds of one PredictionEngine call (one row at a time), when measured.</summary>
    public double? PredictMilliseconds { get; init; }
}

/// <summary>A prediction as a PredictionEngine returns it.</summary>
internal sealed class ClassPrediction
{
    public uint PredictedLabel { get; set; }
}

/// <summary>A row as ML.NET reads it.</summary>
internal sealed class TextRow
{
    public string Text { get; set; } = "";
    public string Class { get; set; } = "";
}

/// <summary>Fits and scores every model of one task variant, each in a fresh <see cref="MLContext"/> with the same seed.</summary>
internal sealed class Runs(TaskData task, int seed, List<Result> results, IReadOnlyList<int>? editPercents = null)
{
    public static IDataView Load(MLContext ml, Row[] rows) => ml.Data.LoadFromEnumerable(rows.Select(r => new TextRow { Text = r.Text, Class = r.Class }));

    /// <summary>ML.NET's classic text pipeline: word and character n-grams (FeaturizeText's defaults), then <paramref name="trainer"/>.</summary>
    public void Classic(string name, Func<MLContext, IEstimator<ITransformer>> trainer) =>
        Run(name, ml => ml.Transforms.Conversion.MapValueToKey("Label", "Class")
            .Append(ml.Transforms.Text.FeaturizeText("Features", "Text"))
            .AppendCacheCheckpoint(ml)
            .Append(trainer(ml)));

    /// <summary>The language model's Features (mean hidden state), min-max normalised, into SDCA.</summary>
    public void LanguageModelFeatures(string name, MblmLanguageModelTransformer lm, double lmSeconds) =>
        Run(name, ml => ml.Transforms.Conversion.MapValueToKey("Label", "Class")
            .Append(ml.Transforms.NormalizeMinMax("Features"))
            .AppendCacheCheckpoint(ml)
            .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy()), lm.Transform, lmSeconds);

    /// <summary>
    /// Hybrid: the MBLM classifier's pooled features (<c>FeaturesColumnName</c>, L2-normalised) concatenated with
    /// FeaturizeText's, into SDCA; the MBLM fit is part of the fit time.
    /// </summary>
    public void Hybrid(string name, MblmTextClassifierTrainer.Options options) =>
        Run(name, ml => ml.Transforms.Conversion.MapValueToKey("Label", "Class")
            .Append(ml.MulticlassClassification.Trainers.MblmTextClassifier(options with
            {
                Progress = new Bar(name), FeaturesColumnName = "MblmFeatures", ScoreColumnName = "MblmScore", PredictedLabelColumnName = "MblmLabel",
            }))
            .Append(ml.Transforms.NormalizeLpNorm("MblmFeatures"))
            .Append(ml.Transforms.Text.FeaturizeText("TextFeatures", "Text"))
            .Append(ml.Transforms.Concatenate("Features", "TextFeatures", "MblmFeatures"))
            .AppendCacheCheckpoint(ml)
            .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy()));

    /// <summary>The MBLM text classifier from ML.NET's multiclass catalog.</summary>
    public void Mblm(string name, MblmTextClassifierTrainer.Options options) =>
        Run(name, ml => ml.Transforms.Conversion.MapValueToKey("Label", "Class")
            .Append(ml.MulticlassClassification.Trainers.MblmTextClassifier(options with { Progress = new Bar(name) })));

    private void Run(string name, Func<MLContext, IEstimator<ITransformer>> pipeline, Func<IDataView, IDataView>? before = null, double extraFitSeconds = 0)
    {
        var ml = new MLContext(seed);
        before ??= Identity;
        var train = before(Load(ml, task.Train));
        var test = before(Load(ml, task.Test));
        var clock = Stopwatch.StartNew();
        var model = pipeline(ml).Fit(train);
        double fit = clock.Elapsed.TotalSeconds + extraFitSeconds;
        clock.Restart();
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        double scoring = clock.Elapsed.TotalSeconds;
        // One row at a time through a PredictionEngine (after one warm-up call), over up to 100 held-out rows.
        double? predictMs = null;
        if (before == Identity)
        {
            using var engine = ml.Model.CreatePredictionEngine<TextRow, ClassPrediction>(model, new PredictionEngineOptions { OwnsTransformer = false });
            var rows = task.Test.Take(100).Select(r => new TextRow { Text = r.Text, Class = r.Class }).ToArray();
            engine.Predict(rows[0]);
            clock.Restart();
            foreach (var row in rows) engine.Predict(row);
            predictMs = clock.Elapsed.TotalMilliseconds / rows.Length;
        }
        Report(task.Name, name, metrics, fit, task.Test.Length / scoring, predictMs);
        // Robustness: the same model on the held-out rows with a share of their characters replaced at random.
        foreach (int percent in editPercents ?? [])
        {
            var edited = before(Load(ml, Edited(task.Test, percent / 100.0, seed)));
            clock.Restart();
            var m = ml.MulticlassClassification.Evaluate(model.Transform(edited));
            Report($"{task.Name}, {percent} % edits", name, m, fit, task.Test.Length / clock.Elapsed.TotalSeconds);
        }
        (model as IDisposable)?.Dispose();
    }

    private static readonly Func<IDataView, IDataView> Identity = d => d;

    private void Report(string taskName, string name, MulticlassClassificationMetrics metrics, double fit, double rowsPerSecond, double? predictMs = null)
    {
        var r = new Result(taskName, name, metrics.MicroAccuracy, metrics.MacroAccuracy, metrics.LogLoss, fit, rowsPerSecond) { PredictMilliseconds = predictMs };
        results.Add(r);
        Console.WriteLine($"    {taskName} — {name}: accuracy {r.Accuracy:F3}, macro {r.MacroAccuracy:F3}, log-loss {r.LogLoss:F3}, fit {r.FitSeconds:F1} s, {r.RowsPerSecond:F0} rows/s" +
                          (predictMs is double ms ? $", PredictionEngine {ms:F2} ms a row" : ""));
    }

    /// <summary>
    /// The rows with each character replaced, with probability <paramref name="rate"/>, by a random printable ASCII character
    /// (a byte edit for ASCII text; a whole character for others, so the text stays valid UTF-8); seeded.
    /// </summary>
    internal static Row[] Edited(Row[] rows, double rate, int seed)
    {
        var rng = new Random(seed * 7919 + (int)(rate * 1000));
        string Edit(string c) => rng.NextDouble() < rate ? ((char)rng.Next(0x20, 0x7F)).ToString() : c;
        return rows.Select(r => r with { Text = string.Concat(Elements(System.Globalization.StringInfo.GetTextElementEnumerator(r.Text)).Select(Edit)) }).ToArray();
    }

    private static IEnumerable<string> Elements(System.Globalization.TextElementEnumerator e)
    {
        while (e.MoveNext()) yield return e.GetTextElement();
    }
}

/// <summary>A few progress lines per fit.</summary>
internal sealed class Bar(string name) : IProgress<Mblm.Training.TrainingProgress>
{
    public void Report(Mblm.Training.TrainingProgress p)
    {
        if (p.Step % Math.Max(1, p.TotalSteps / 4) == 0 || p.Step == p.TotalSteps)
            Console.WriteLine($"      {name}: step {p.Step}/{p.TotalSteps} loss {p.Loss:F3} (eta {p.Eta:mm\\:ss})");
    }
}
