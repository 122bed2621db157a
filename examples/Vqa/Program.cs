// Visual question answering on generated CLEVR-like scenes (the paper's second claim, at laptop scale): a byte model with
// no image encoder and no classification head, trained only by next-byte prediction on the answer, against the majority
// answer per question family and a CNN+LSTM classifier. Prints accuracy per question family.
//
//   dotnet run -c Release --project examples/Vqa                 # default: about 10 minutes on 2 CPU cores
//   dotnet run -c Release --project examples/Vqa -- --large      # more scenes, larger images, more epochs
//   dotnet run -c Release --project examples/Vqa -- --one-object # the tests' two one-object scene generators (colour, shape)
//            [--epochs N (MBLM, default 6)] [--baseline-epochs N (CNN+LSTM, default 150)] [--skip pooled,likelihood,baseline]
//   options: --scenes N --test-scenes N --questions N --epochs N --size WxH --levels N|none --skip likelihood,jpeg,transfer,baseline --out DIR
//            --seed N (the models' seed: initialisation and shuffling; the scenes stay the same) --pretrained NAME|DIR (also
//            fine-tune from a pretrained model folder, e.g. mblm-base: the answer classifier takes its shape)
//   (training curves and confusion matrices as PNG in DIR, default out/vqa)

using System.Diagnostics;
using System.Globalization;
using System.Text;
using Mblm.Config;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Mblm.Examples;
using Mblm.MLNet.Vision;
using Microsoft.ML;
using Microsoft.ML.Data;

CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var flags = args.Select((a, i) => (a, i)).Where(x => x.a.StartsWith("--", StringComparison.Ordinal))
    .ToDictionary(x => x.a[2..], x => x.i + 1 < args.Length && !args[x.i + 1].StartsWith("--", StringComparison.Ordinal) ? args[x.i + 1] : "true");
string Flag(string name, string fallback) => flags.TryGetValue(name, out var v) ? v : fallback;
bool large = flags.ContainsKey("large");
int scenes = int.Parse(Flag("scenes", large ? "4000" : "1000")), testScenes = int.Parse(Flag("test-scenes", large ? "400" : "100"));
int questions = int.Parse(Flag("questions", "3")), epochs = int.Parse(Flag("epochs", large ? "8" : "4"));
var size = Flag("size", large ? "32x24" : "16x12").Split('x').Select(int.Parse).ToArray();
int? levels = Flag("levels", "8") is "none" ? null : int.Parse(Flag("levels", "8"));
var skip = Flag("skip", "").Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
string outDir = Flag("out", "out/vqa");
int seed = int.Parse(Flag("seed", "1"));

// The one-object scenes of the tests' two generators: colour and shape, pooled head vs label likelihood vs CNN+LSTM (150
// epochs by default, about the MBLM's fit time: at 12 it has not yet learned to read the question and answers a colour).
if (flags.ContainsKey("one-object"))
{
    OneObject.Run(seed, int.Parse(Flag("epochs", "6")), int.Parse(Flag("baseline-epochs", "150")), flags.TryGetValue("pretrained", out var from) ? from : null, skip);
    return;
}

// 1. Data: train and test scenes from different seeds (held-out scenes).
var train = new ClevrLikeGenerator(seed: 1).Generate(scenes, questions);
var test = new ClevrLikeGenerator(seed: 2).Generate(testScenes, questions);
Console.WriteLine($"{scenes} training scenes, {testScenes} test scenes, {questions} questions each; images 64x48 drawn, " +
                  $"model input {size[0]}x{size[1]} ({levels?.ToString() ?? "256"} levels per channel), seed {seed}");
var families = ClevrLikeGenerator.Families;
var results = new List<(string Name, string[] Predicted, double Seconds)>();

// 2. The floor: the most frequent training answer of each family.
var majority = train.GroupBy(e => e.Family).ToDictionary(g => g.Key, g => g.GroupBy(e => e.Answer).OrderByDescending(a => a.Count()).First().Key);
results.Add(("majority answer per family (floor)", test.Select(e => majority[e.Family]).ToArray(), 0));

var ml = new MLContext(seed);
var trainData = ClevrLikeGenerator.ToDataView(ml, train);
var testData = ClevrLikeGenerator.ToDataView(ml, test);
var baseOptions = new MblmAnswerClassifierTrainer.Options
{
    LabelColumnName = "Label", Image = new ImageByteOptions { ResizeWidth = size[0], ResizeHeight = size[1], Levels = levels }, MaxEpochs = epochs, BatchSize = 16, LearningRate = 2e-3,
    // Context for the image bytes plus twice the longest question: 256 patches of 8 (2,048) by default, more for large images.
    ModelConfig = MblmPresets.SmallVqa with { SeqLens = [Math.Max(256, (3 * size[0] * size[1] + 400 + 7) / 8), 8] },
};

string[] RunMblm(string name, MblmAnswerClassifierTrainer.Options options)
{
    var clock = Stopwatch.StartNew();
    var bar = new Bar(name);
    var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Answer", keyData: ClevrLikeGenerator.AnswerKeyData(ml))
        .Append(ml.Mblm().AnswerClassifier(options with { Progress = bar }))
        .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedAnswer", "PredictedLabel"));
    var model = pipeline.Fit(trainData);
    var scored = model.Transform(testData);
    var metrics = ml.MulticlassClassification.Evaluate(scored, "Label");
    var predicted = scored.GetColumn<string>("PredictedAnswer").ToArray();
    Console.WriteLine($"  {name}: micro accuracy {metrics.MicroAccuracy:P1}, log-loss {metrics.LogLoss:F3} ({clock.Elapsed.TotalSeconds:F0} s)");
    string slug = new string(name.ToLowerInvariant().Select(c => char.IsLetterOrDigit(c) ? c : '-').ToArray()).Trim('-');
    Plots.Save(bar.Curve.ToPng($"{name}: training loss"), Path.Combine(outDir, $"{slug}-curve.png"));
    Plots.Save(Plots.ConfusionMatrix($"{name}: held-out answers", metrics, scored), Path.Combine(outDir, $"{slug}-confusion.png"));
    Console.WriteLine($"  plots: {Path.GetFullPath(Path.Combine(outDir, slug))}-curve.png, -confusion.png");
    ((IDisposable)model).Dispose();
    results.Add((name, predicted, clock.Elapsed.TotalSeconds));
    return predicted;
}

// 3. MBLM on pixels (planar RGB, discretised): the pooled head (the default), and the paper's label likelihood.
RunMblm("MBLM, pixels", baseOptions);
if (!skip.Contains("likelihood"))
    RunMblm("MBLM, pixels, label likelihood", baseOptions with { Objective = Mblm.MLNet.Classification.MblmClassifierObjective.LabelLikelihood });

// 3b. The same from a pretrained model folder: its shape (widths, depths, patch size), the context sized to the data.
if (flags.TryGetValue("pretrained", out var pretrained))
    RunMblm($"MBLM, pixels, from {Path.GetFileName(pretrained.TrimEnd('/'))}", baseOptions with { ModelConfig = null, Pretrained = pretrained });

// 4. MBLM on JPEG file bytes.
if (!skip.Contains("jpeg")) RunMblm("MBLM, JPEG bytes", baseOptions with { Image = baseOptions.Image with { Encoding = ImageEncoding.Jpeg, JpegQuality = 90, Levels = null } });

// 5. CNN+LSTM with a classification head.
if (!skip.Contains("baseline"))
{
    var clock = Stopwatch.StartNew();
    var predicted = CnnLstmBaseline.TrainAndPredict(train, test, ClevrLikeGenerator.AllAnswers, epochs: large ? 20 : 12, seed: seed);
    results.Add(("CNN+LSTM (classification head)", predicted, clock.Elapsed.TotalSeconds));
    Console.WriteLine($"  CNN+LSTM: {clock.Elapsed.TotalSeconds:F0} s");
}

// 6. MBLM initialised from a text-pretrained language model (this repository's README and docs).
if (!skip.Contains("transfer"))
{
    var text = FindRepoText();
    var rows = text.Split("\n\n").Where(r => r.Trim().Length > 0).Select(r => new TextRow { Text = r }).ToList();
    var lmOptions = new MblmLanguageModelTrainer.Options { ModelConfig = baseOptions.ModelConfig! with { NumTokens = 257 }, MaxEpochs = large ? 20 : 8 };
    var clock = Stopwatch.StartNew();
    using var lm = ml.Mblm().LanguageModel(lmOptions).Fit(ml.Data.LoadFromEnumerable(rows));
    string lmPath = Path.Combine(Path.GetTempPath(), $"mblm-vqa-text-lm-{Environment.ProcessId}.zip");
    ml.Mblm().SaveModel(lm, ml.Data.LoadFromEnumerable(rows).Schema, lmPath);
    Console.WriteLine($"  text pre-training: {Encoding.UTF8.GetByteCount(text):N0} bytes, {lm.Training.Steps} steps ({clock.Elapsed.TotalSeconds:F0} s)");
    RunMblm("MBLM, pixels, from a text-pretrained LM", baseOptions with { TransferFrom = lmPath });
    File.Delete(lmPath);
}

// 7. The table: accuracy per question family on the held-out scenes.
Console.WriteLine();
Console.WriteLine($"| model | {string.Join(" | ", families)} | all | train+eval s |");
Console.WriteLine($"| --- |{string.Concat(Enumerable.Repeat(" --- |", families.Length))} --- | --- |");
foreach (var (name, predicted, seconds) in results)
{
    var cells = families.Select(f =>
    {
        var idx = Enumerable.Range(0, test.Count).Where(i => test[i].Family == f).ToList();
        return idx.Count == 0 ? "–" : $"{100.0 * idx.Count(i => predicted[i] == test[i].Answer) / idx.Count:F1}";
    });
    double all = 100.0 * Enumerable.Range(0, test.Count).Count(i => predicted[i] == test[i].Answer) / test.Count;
    Console.WriteLine($"| {name} | {string.Join(" | ", cells)} | **{all:F1}** | {seconds:F0} |");
}
Console.WriteLine($"\n{test.Count} test questions ({test.Count / families.Length} per family).");

static string FindRepoText()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "MblmMLNet.sln")))
            return string.Join("\n\n", new[] { Path.Combine(dir.FullName, "README.md") }.Concat(Directory.GetFiles(Path.Combine(dir.FullName, "docs"), "*.md")).Select(File.ReadAllText));
    throw new FileNotFoundException("run from a clone of the repository (the text pre-training reads README.md and docs/)");
}

/// <summary>A text row for the language model.</summary>
public sealed class TextRow
{
    public string Text { get; set; } = "";
}

/// <summary>Prints training progress every tenth of the run.</summary>
internal sealed class Bar(string name) : IProgress<Mblm.Training.TrainingProgress>
{
    /// <summary>Every report, for the PNG training curve.</summary>
    public TrainingCurve Curve { get; } = new();

    public void Report(Mblm.Training.TrainingProgress p)
    {
        Curve.Report(p);
        if (p.Step % Math.Max(1, p.TotalSteps / 5) == 0 || p.Step == p.TotalSteps)
            Console.WriteLine($"    {name}: step {p.Step}/{p.TotalSteps} answer loss {p.Loss:F3} ({p.BytesPerSecond / 1024:F1} KiB/s, eta {p.Eta:mm\\:ss})");
    }
}
