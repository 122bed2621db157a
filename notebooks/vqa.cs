// The Vqa notebook as a .NET 10 file-based app: the same steps and the same figures, written as PNG files.
//   bash notebooks/pack.sh && dotnet run notebooks/vqa.cs [-- OUT_DIR]       (default OUT_DIR: out/notebooks/vqa)
#:package Mblm.MLNet@0.1.0
#:package Mblm.Examples@0.1.0
#:package libtorch-cpu-linux-x64@2.10.0
// ML.NET generates code at run time: no native AOT (file-based apps default to it).
#:property PublishAot=false

using Mblm.Config;
using Mblm.Examples;
using Mblm.MLNet;
using Mblm.MLNet.Classification;
using Mblm.MLNet.Vision;
using Microsoft.ML;
using Microsoft.ML.Data;

string outDir = args.Length > 0 ? args[0] : Path.Combine("out", "notebooks", "vqa");
Directory.CreateDirectory(outDir);

// Scenes and questions: training and test scenes come from different seeds.
var train = new ClevrLikeGenerator(seed: 1).Generate(scenes: 80, questionsPerScene: 5);
var test = new ClevrLikeGenerator(seed: 2).Generate(scenes: 12, questionsPerScene: 5);
Console.WriteLine($"{train.Count} training questions, {test.Count} test questions; answers: {string.Join(", ", ClevrLikeGenerator.AllAnswers)}");

// What the model reads: the question, the image as planar RGB bytes, the question again, the answer.
var imageOptions = new ImageByteOptions { ResizeWidth = 12, ResizeHeight = 9, Levels = 8 };
var pixels = ImageBytes.Encode(train[0].Image, imageOptions);
var (ids, mask) = VqaLayout.Sample(VqaLayout.Utf8(train[0].Question), pixels, VqaLayout.Utf8(train[0].Answer));
Console.WriteLine($"image: {pixels.Length} bytes; sequence: {ids.Length} tokens, loss on the last {mask.Count(m => m > 0)}");

// The pipeline: answers as keys, the MBLM answer classifier, keys back to text.
var ml = new MLContext(seed: 1);
var trainData = ClevrLikeGenerator.ToDataView(ml, train);
var testData = ClevrLikeGenerator.ToDataView(ml, test);
var curve = new TrainingCurve();
var options = new MblmAnswerClassifierTrainer.Options
{
    LabelColumnName = "Label",
    Image = imageOptions,
    ModelConfig = MblmPresets.SmallVqa with { SeqLens = [64, 8] },   // 512 tokens of context are enough here
    MaxEpochs = 2, MaxSteps = 30, BatchSize = 16,                   // tiny, as in the notebook
    Objective = MblmClassifierObjective.LabelLikelihood,            // the paper's method (the default is a pooled head)
    Progress = curve,
};
var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Answer", keyData: ClevrLikeGenerator.AnswerKeyData(ml))
    .Append(ml.Mblm().AnswerClassifier(options))
    .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedAnswer", "PredictedLabel"));
using var model = (IDisposable)pipeline.Fit(trainData);

// Evaluate with ML.NET's multiclass evaluator, per question family.
var scored = ((ITransformer)model).Transform(testData);
var metrics = ml.MulticlassClassification.Evaluate(scored, labelColumnName: "Label");
Console.WriteLine($"micro accuracy {metrics.MicroAccuracy:P1}, macro accuracy {metrics.MacroAccuracy:P1}, log-loss {metrics.LogLoss:F3}");
var predicted = scored.GetColumn<string>("PredictedAnswer").ToArray();
foreach (var family in ClevrLikeGenerator.Families)
{
    var rows = Enumerable.Range(0, test.Count).Where(i => test[i].Family == family).ToList();
    Console.WriteLine($"{family,-18} {100.0 * rows.Count(i => predicted[i] == test[i].Answer) / rows.Count,5:F1} %");
}

// The notebook's figures.
Console.WriteLine($"figure: {Plots.Save(curve.ToPng("answer classifier: training loss"), Path.Combine(outDir, "training-loss.png"))}");
Console.WriteLine($"figure: {Plots.Save(Plots.ConfusionMatrix("held-out answers", metrics, scored), Path.Combine(outDir, "confusion-matrix.png"))}");
