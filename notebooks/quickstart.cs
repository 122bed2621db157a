// The QuickStart notebook as a .NET 10 file-based app: the same steps and the same figure, written as a PNG file.
//   bash notebooks/pack.sh && dotnet run notebooks/quickstart.cs [-- OUT_DIR]   (default OUT_DIR: out/notebooks/quickstart)
// It reads this repository's README.md and docs/*.md, found from the current folder or the repository root.
#:package Mblm.MLNet@0.1.0
#:package Mblm.Examples@0.1.0
#:package libtorch-cpu-linux-x64@2.10.0
// ML.NET generates code at run time: no native AOT (file-based apps default to it).
#:property PublishAot=false

using System.Text;
using Mblm.Examples;
using Mblm.Generation;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Mblm.Training;
using Microsoft.ML;

string outDir = args.Length > 0 ? args[0] : Path.Combine("out", "notebooks", "quickstart");
Directory.CreateDirectory(outDir);
string root = File.Exists("README.md") ? "." : "..";

// Data: the README and docs, cut into rows of whole lines of at most 512 bytes.
var text = string.Join("\n", new[] { Path.Combine(root, "README.md") }.Concat(Directory.GetFiles(Path.Combine(root, "docs"), "*.md").Order(StringComparer.Ordinal))
    .Select(File.ReadAllText));
var rows = TextRows.Split(text, 512);
var ml = new MLContext(seed: 1);
var all = ml.Data.LoadFromEnumerable(rows.Select(r => new TextRow { Text = r }));
var split = ml.Data.TrainTestSplit(all, testFraction: 0.15, seed: 1);
Console.WriteLine($"{Encoding.UTF8.GetByteCount(text):N0} bytes in {rows.Count} rows");

// The estimator, with a progress callback that records every step for the training curve.
var curve = new TrainingCurve();
var options = new MblmLanguageModelTrainer.Options
{
    InputColumnName = "Text",
    MaxEpochs = 10,
    MaxNewBytes = 60,
    Sampling = new SamplingOptions { Temperature = 0.7, TopK = 20, Seed = 1 },
    ValidationSet = split.TestSet,
    Progress = curve,
};
using var model = ml.Mblm().LanguageModel(options).Fit(split.TrainSet);
Console.WriteLine($"{model.Training.Steps} steps, last loss {model.Training.FinalLoss:F3} nats/byte, validation {model.Training.ValidationBitsPerByte:F3} bits/byte");
Console.WriteLine($"figure: {Plots.Save(curve.ToPng("quick start: training and validation"), Path.Combine(outDir, "training-curve.png"))}");

// Scoring and evaluation.
var scored = model.Transform(split.TestSet);
var metrics = ml.Mblm().Evaluate(scored);
Console.WriteLine($"held out: {metrics.BitsPerByte:F3} bits per byte, perplexity {metrics.Perplexity:F2}, {metrics.ByteCount:N0} bytes in {metrics.RowCount} rows");

// Save the pipeline, load it back, predict one row.
string path = Path.Combine(outDir, "model.zip");
ml.Mblm().SaveModel(model, split.TrainSet.Schema, path);
var ml2 = new MLContext();
using var loaded = (IDisposable)ml2.Mblm().LoadModel(path, out _);
var again = ml2.Mblm().Evaluate(((ITransformer)loaded).Transform(split.TestSet));
Console.WriteLine($"{new FileInfo(path).Length / 1024} KiB; reloaded: {again.BitsPerByte:F3} bits per byte");
using (var engine = ml2.Model.CreatePredictionEngine<TextRow, Scored>((ITransformer)loaded, new PredictionEngineOptions { OwnsTransformer = false }))
{
    var p = engine.Predict(new TextRow { Text = "The model" });
    Console.WriteLine($"'The model': {p.BitsPerByte:F2} bits per byte; continues: {p.Completion}");
}

// Features for another ML.NET trainer: tell rows that contain code from prose rows.
var labeled = ml.Data.LoadFromEnumerable(rows.Select(r => new Labeled { Text = r, Label = r.Contains("```") || r.Contains("    ") }));
var featurized = ml.Data.Cache(model.Transform(labeled), "Features", "Label");
var classifier = ml.Transforms.NormalizeMinMax("Features").Append(ml.BinaryClassification.Trainers.SdcaLogisticRegression("Label", "Features"));
var cv = ml.BinaryClassification.CrossValidate(featurized, classifier, numberOfFolds: 3, labelColumnName: "Label");
Console.WriteLine("3-fold accuracy: " + string.Join(", ", cv.Select(f => f.Metrics.Accuracy.ToString("F2"))));

/// <summary>An input row.</summary>
public sealed class TextRow { public string Text { get; set; } = ""; }

/// <summary>What the pipeline's prediction engine reads back.</summary>
public sealed class Scored { public float BitsPerByte { get; set; } public string Completion { get; set; } = ""; }

/// <summary>A row of the features task.</summary>
public sealed class Labeled { public string Text { get; set; } = ""; public bool Label { get; set; } }
