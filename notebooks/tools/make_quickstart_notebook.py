"""Writes notebooks/QuickStart.ipynb (run from the repository root: python3 notebooks/tools/make_quickstart_notebook.py notebooks/QuickStart.ipynb)."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbcells import notebook

md, cs, save = notebook()

md("""
# MBLM quick start: a byte language model in an ML.NET pipeline

The Multiscale Byte Language Model (MBLM, arXiv 2502.14553) reads raw bytes: no tokenizer, any text or binary data. It is
a hierarchy of decoders — here a global Transformer over 64 patches of 8 bytes and a local Transformer inside each patch —
so a 512-byte context costs far less than a flat byte Transformer.

This notebook walks the pipeline of `examples/QuickStart`: train through ML.NET, evaluate in bits per byte, save the whole
pipeline, load it back, score and complete text, and hand the model's features to an ordinary ML.NET trainer. It runs in
CI at a tiny size (about 30 training steps on 20 KB); give it more text and epochs for a useful model.

It uses this repository's own build (run `dotnet build MblmMLNet.sln` first), not a published package. Run it from the
`notebooks` folder.
""")
cs("""
#r "nuget: Microsoft.ML, 5.0.1"
// This repository's build: the ML.NET layer, the model library and TorchSharp, from the quick-start example's output folder.
#r "../examples/QuickStart/bin/Debug/net10.0/TorchSharp.dll"
#r "../examples/QuickStart/bin/Debug/net10.0/YamlDotNet.dll"
#r "../examples/QuickStart/bin/Debug/net10.0/Mblm.dll"
#r "../examples/QuickStart/bin/Debug/net10.0/Mblm.MLNet.dll"
""")
md("""
The notebook host does not know our native libraries, so load the build's (patched) `libLibTorchSharp.so` explicitly
before the first tensor is made.
""")
cs("""
using System.IO;
using System.Runtime.InteropServices;
NativeLibrary.Load(Path.GetFullPath("../examples/QuickStart/bin/Debug/net10.0/runtimes/linux-x64/native/libLibTorchSharp.so"));
Console.WriteLine($"TorchSharp ready: {TorchSharp.torch.ones(2, 2).sum().item<float>()} = 4");
""")
md("""
## Data

Rows of text. Each row is one document for the model; rows longer than the model's context are cut into windows. Here:
this repository's README and docs, cut by `TextRows.Split` into rows of whole lines of at most 512 bytes.
""")
cs("""
using System.Linq;
using System.Text;
using Microsoft.ML;
using Mblm.MLNet;

public class TextRow { public string Text { get; set; } = ""; }

var text = string.Join("\\n", new[] { "../README.md" }.Concat(Directory.GetFiles("../docs", "*.md")).Select(File.ReadAllText));
var rows = TextRows.Split(text, 512);
var ml = new MLContext(seed: 1);
var all = ml.Data.LoadFromEnumerable(rows.Select(r => new TextRow { Text = r }));
var split = ml.Data.TrainTestSplit(all, testFraction: 0.15, seed: 1);
Console.WriteLine($"{Encoding.UTF8.GetByteCount(text):N0} bytes in {rows.Count} rows");
""")
md("""
## The estimator

`mlContext.Mblm().LanguageModel(...)` is an ordinary ML.NET estimator. Its options are an immutable record: the model
config (default `MblmPresets.Small`), epochs or a step cap, batch size, learning rate, a validation set, completion length
and sampling, and a progress callback. Fit logs to `MLContext.Log` too.
""")
cs("""
using Mblm.Generation;
using Mblm.Training;

var steps = new List<TrainingProgress>();
var options = new MblmLanguageModelTrainer.Options
{
    InputColumnName = "Text",
    MaxEpochs = 10,              // small for CI: about 30 steps; more data and epochs make a real model
    MaxNewBytes = 60,            // adds a Completion column
    Sampling = new SamplingOptions { Temperature = 0.7, TopK = 20, Seed = 1 },
    ValidationSet = split.TestSet,
    Progress = new Progress<TrainingProgress>(p => { lock (steps) steps.Add(p); }),
};
ml.Log += (_, e) => { if (e.Source.Contains("Mblm") && e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Info) Console.WriteLine(e.Message); };
var model = ml.Mblm().LanguageModel(options).Fit(split.TrainSet);
Console.WriteLine($"{model.Training.Steps} steps, last loss {model.Training.FinalLoss:F3} nats/byte, validation {model.Training.ValidationBitsPerByte:F3} bits/byte");
""")
md("""
## Scoring and evaluation

`Transform` adds `BitsPerByte`, `Features` and `Completion`; rows are scored in batches. `Evaluate` gives byte-weighted
bits per byte and per-byte perplexity.
""")
cs("""
using Microsoft.ML.Data;

var scored = model.Transform(split.TestSet);
var metrics = ml.Mblm().Evaluate(scored);
Console.WriteLine($"held out: {metrics.BitsPerByte:F3} bits per byte, perplexity {metrics.Perplexity:F2}, {metrics.ByteCount:N0} bytes in {metrics.RowCount} rows");
if (!(metrics.BitsPerByte < 8)) throw new Exception("a trained model must beat 8 bits per byte");
var firstRows = scored.GetColumn<float>("BitsPerByte").Take(5).ToArray();
Console.WriteLine("first rows: " + string.Join(", ", firstRows.Select(b => b.ToString("F2"))));
""")
md("""
## Save the pipeline, load it back

`mlContext.Model.Save` cannot store a third-party stage's weights, so the MBLM catalog has its own `SaveModel`/`LoadModel`
for whole pipelines (our stages mixed with ML.NET transforms). The file is versioned and written atomically.
""")
cs("""
var path = Path.Combine(Path.GetTempPath(), "mblm-notebook-model.zip");
ml.Mblm().SaveModel(model, split.TrainSet.Schema, path);
var ml2 = new MLContext();
var loaded = ml2.Mblm().LoadModel(path, out var inputSchema);
var again = ml2.Mblm().Evaluate(loaded.Transform(split.TestSet));
Console.WriteLine($"{new FileInfo(path).Length / 1024} KiB; reloaded: {again.BitsPerByte:F3} bits per byte");
if (Math.Abs(again.BitsPerByte - metrics.BitsPerByte) > 1e-6) throw new Exception("the reloaded pipeline must score the same");
""")
md("""
## Predict one row

A `PredictionEngine` scores one row at a time. `OwnsTransformer = false` keeps the model alive when the engine is
disposed (ML.NET's default would dispose it).
""")
cs("""
public class Scored { public float BitsPerByte { get; set; } public string Completion { get; set; } = ""; }

using (var engine = ml2.Model.CreatePredictionEngine<TextRow, Scored>(loaded, new PredictionEngineOptions { OwnsTransformer = false }))
{
    var p = engine.Predict(new TextRow { Text = "The model" });
    Console.WriteLine($"'The model': {p.BitsPerByte:F2} bits per byte; continues: {p.Completion}");
}
""")
md("""
## Features for other ML.NET trainers

`Features` is a known-size vector (the mean of the local stage's final hidden states), so it plugs into any ML.NET
trainer. A toy task: tell README rows that contain code from prose rows.
""")
cs("""
public class Labeled { public string Text { get; set; } = ""; public bool Label { get; set; } }

var labeled = ml.Data.LoadFromEnumerable(rows.Select(r => new Labeled { Text = r, Label = r.Contains("```") || r.Contains("    ") }));
// Transform is lazy: cache the scored rows so that the trainer's passes and the folds do not re-run the byte model.
var featurized = ml.Data.Cache(model.Transform(labeled), "Features", "Label");
var classifier = ml.Transforms.NormalizeMinMax("Features")
    .Append(ml.BinaryClassification.Trainers.SdcaLogisticRegression("Label", "Features"));
var cv = ml.BinaryClassification.CrossValidate(featurized, classifier, numberOfFolds: 3, labelColumnName: "Label");
Console.WriteLine("3-fold accuracy: " + string.Join(", ", cv.Select(f => f.Metrics.Accuracy.ToString("F2"))));
""")
cs("""
(loaded as IDisposable)?.Dispose();
model.Dispose();
File.Delete(path);
""")
save(sys.argv[1] if len(sys.argv) > 1 else "notebooks/QuickStart.ipynb")
