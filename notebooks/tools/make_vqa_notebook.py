"""Writes notebooks/Vqa.ipynb (run from the repository root: python3 notebooks/tools/make_vqa_notebook.py)."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbcells import notebook

md, cs, save = notebook()

md("""
# Visual question answering with a byte model

The MBLM paper's second claim: a byte language model with **no image encoder and no classification head**, trained only by
next-byte prediction on the answer of "question, image bytes, question, answer" sequences, answers questions about
CLEVR scenes about as well as a CNN+LSTM classifier. This notebook does it in miniature with ML.NET:

1. generate CLEVR-like scenes and questions (seeded, deterministic),
2. look at a few of them,
3. train `mlContext.Mblm().AnswerClassifier(...)` on the image pixels as bytes,
4. evaluate it with ML.NET's multiclass evaluator and look at the errors per question family.

It runs in CI at a tiny size (seconds of training), so its accuracy is near chance; `examples/Vqa` runs the real
comparison. It uses this repository's build (`dotnet build MblmMLNet.sln` first); run it from the `notebooks` folder.
""")
cs("""
#r "nuget: Microsoft.ML, 5.0.1"
#r "../examples/Vqa/bin/Debug/net10.0/SkiaSharp.dll"
#r "../examples/Vqa/bin/Debug/net10.0/Microsoft.ML.ImageAnalytics.dll"
#r "../examples/Vqa/bin/Debug/net10.0/TorchSharp.dll"
#r "../examples/Vqa/bin/Debug/net10.0/YamlDotNet.dll"
#r "../examples/Vqa/bin/Debug/net10.0/Mblm.dll"
#r "../examples/Vqa/bin/Debug/net10.0/Mblm.MLNet.dll"
#r "../examples/Vqa/bin/Debug/net10.0/Mblm.Examples.dll"

// Mblm.Examples.dll: the CLEVR-like scene generator (example data from examples/Shared, not part of Mblm.MLNet).
using System.IO;
using System.Runtime.InteropServices;
// The notebook host does not know our native libraries: load the build's copies first.
NativeLibrary.Load(Path.GetFullPath("../examples/Vqa/bin/Debug/net10.0/runtimes/linux-x64/native/libLibTorchSharp.so"));
var skia = NativeLibrary.Load(Path.GetFullPath("../examples/Vqa/bin/Debug/net10.0/runtimes/linux-x64/native/libSkiaSharp.so"));
NativeLibrary.SetDllImportResolver(typeof(SkiaSharp.SKImageInfo).Assembly, (name, _, _) => name.Contains("SkiaSharp") ? skia : IntPtr.Zero);
""")
md("""
## Scenes and questions

Each scene has 2–6 objects: a cube, sphere or cylinder, in one of CLEVR's 8 colours, small or large, rubber or metal
(metal has a highlight). Questions come from CLEVR's five families: *exists*, *count*, *compare-integer*,
*query-attribute* and *compare-attribute*. Training and test scenes come from different seeds.
""")
cs("""
using Mblm.Examples;
using Mblm.MLNet.Vision;

var train = new ClevrLikeGenerator(seed: 1).Generate(scenes: 80, questionsPerScene: 5);
var test = new ClevrLikeGenerator(seed: 2).Generate(scenes: 12, questionsPerScene: 5);
Console.WriteLine($"{train.Count} training questions, {test.Count} test questions; answers: {string.Join(", ", ClevrLikeGenerator.AllAnswers)}");
""")
cs("""
// A few test scenes, enlarged, with their questions.
var html = new System.Text.StringBuilder("<table>");
foreach (var scene in test.GroupBy(e => e.SceneId).Take(3))
{
    var png = ImageBytes.Encode(scene.First().Image, new ImageByteOptions { Encoding = ImageEncoding.Png });
    html.Append($"<tr><td><img style='width:192px;image-rendering:pixelated' src='data:image/png;base64,{Convert.ToBase64String(png)}'/></td><td>");
    foreach (var q in scene) html.Append($"{q.Family}: {System.Net.WebUtility.HtmlEncode(q.Question)} → <b>{q.Answer}</b><br/>");
    html.Append("</td></tr>");
}
html.Append("</table>");
display(HTML(html.ToString()));
""")
md("""
## What the model reads

The image is cropped/resized and discretised, then written as planar RGB bytes (all red rows, then green, then blue), as in
the reference. The sequence is `[SOT] question [EOM] [SOI] image [EOM] [SOT] question [EOM] [SOT] answer [EOM]`, with the
special tokens at ids 256–259, outside the byte range, and the loss on the answer segment only.
""")
cs("""
var imageOptions = new ImageByteOptions { ResizeWidth = 12, ResizeHeight = 9, Levels = 8 };
var pixels = ImageBytes.Encode(train[0].Image, imageOptions);
var (ids, mask) = VqaLayout.Sample(VqaLayout.Utf8(train[0].Question), pixels, VqaLayout.Utf8(train[0].Answer));
Console.WriteLine($"image: {pixels.Length} bytes; sequence: {ids.Length} tokens, loss on the last {mask.Count(m => m > 0)}");
Console.WriteLine("answer segment ids: " + string.Join(" ", ids.Skip(ids.Length - (int)mask.Sum())));
""")
md("""
## Train the answer classifier

An ordinary ML.NET pipeline: the answer text becomes a key (`MapValueToKey`, with every possible answer as key data), the
MBLM answer classifier trains on it, and `MapKeyToValue` turns the predicted key back into text.
""")
cs("""
using Microsoft.ML;
using Microsoft.ML.Data;
using Mblm.Config;

var ml = new MLContext(seed: 1);
var trainData = ClevrLikeGenerator.ToDataView(ml, train);
var testData = ClevrLikeGenerator.ToDataView(ml, test);
var options = new MblmAnswerClassifierTrainer.Options
{
    LabelColumnName = "Label",
    Image = imageOptions,
    ModelConfig = MblmPresets.SmallVqa with { SeqLens = new[] { 64, 8 } },   // 512 tokens of context are enough here
    MaxEpochs = 2, MaxSteps = 30, BatchSize = 16,                           // tiny, for CI
};
var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Answer", keyData: ClevrLikeGenerator.AnswerKeyData(ml))
    .Append(ml.Mblm().AnswerClassifier(options))
    .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedAnswer", "PredictedLabel"));
var model = pipeline.Fit(trainData);
""")
md("""
## Evaluate

`Score` holds probabilities over the answers (each answer's likelihood under the model, normalised), so ML.NET's
multiclass metrics — including log-loss — are meaningful.
""")
cs("""
var scored = model.Transform(testData);
var metrics = ml.MulticlassClassification.Evaluate(scored, labelColumnName: "Label");
Console.WriteLine($"micro accuracy {metrics.MicroAccuracy:P1}, macro accuracy {metrics.MacroAccuracy:P1}, log-loss {metrics.LogLoss:F3}");

var predicted = scored.GetColumn<string>("PredictedAnswer").ToArray();
foreach (var family in ClevrLikeGenerator.Families)
{
    var rows = Enumerable.Range(0, test.Count).Where(i => test[i].Family == family).ToList();
    var confusions = rows.Where(i => predicted[i] != test[i].Answer).GroupBy(i => $"{test[i].Answer}→{predicted[i]}")
        .OrderByDescending(g => g.Count()).Take(3).Select(g => $"{g.Key} ×{g.Count()}");
    Console.WriteLine($"{family,-18} {100.0 * rows.Count(i => predicted[i] == test[i].Answer) / rows.Count,5:F1} %   most common errors: {string.Join(", ", confusions)}");
}
""")
cs("""
((IDisposable)model).Dispose();
""")
save(sys.argv[1] if len(sys.argv) > 1 else "notebooks/Vqa.ipynb")
