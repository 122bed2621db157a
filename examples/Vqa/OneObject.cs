using System.Diagnostics;
using Mblm.Examples;
using Mblm.MLNet;
using Mblm.MLNet.Classification;
using Mblm.MLNet.Vision;
using Microsoft.ML;
using Microsoft.ML.Data;

/// <summary>
/// <c>--one-object</c>: the two one-object scene generators of <see cref="OneObjectScenes"/> (400 training and 100 held-out
/// scenes each, a colour and a shape question per scene), answered by the answer classifier with its default options (the
/// pooled head), by the paper's label likelihood, and by the CNN+LSTM baseline; accuracy per question family.
/// </summary>
internal static class OneObject
{
    public static void Run(int seed, int epochs, int baselineEpochs, string? pretrained, IReadOnlySet<string> skip)
    {
        Console.WriteLine($"one-object scenes: 400 training and 100 held-out scenes per generator, 2 questions each, 32x24 pixels; {epochs} epochs, seed {seed}");
        var rows = new List<(string Generator, string Model, double Colour, double Shape, double Seconds)>();
        foreach (var generator in new[] { "first", "second" })
        {
            var make = OneObjectScenes.Named(generator);
            var train = make(400, 1);
            var test = make(100, 2);
            void Add(string model, string[] predicted, double seconds)
            {
                double Accuracy(string family) => Enumerable.Range(0, test.Count).Where(i => test[i].Family == family).Average(i => predicted[i] == test[i].Answer ? 1.0 : 0.0);
                rows.Add((generator, model, Accuracy("colour"), Accuracy("shape"), seconds));
                Console.WriteLine($"  {generator} generator, {model}: colour {rows[^1].Colour:F2}, shape {rows[^1].Shape:F2} ({seconds:F0} s)");
            }

            var options = new MblmAnswerClassifierTrainer.Options { LabelColumnName = "Label", MaxEpochs = epochs };
            if (!skip.Contains("pooled"))
                Add("MBLM, pooled head (defaults)", Mblm(train, test, options, seed, out var s1), s1);
            if (!skip.Contains("likelihood"))
                Add("MBLM, label likelihood", Mblm(train, test, options with { Objective = MblmClassifierObjective.LabelLikelihood }, seed, out var s2), s2);
            if (pretrained is not null)
                Add($"MBLM, pooled head, from {Path.GetFileName(pretrained.TrimEnd('/'))}", Mblm(train, test, options with { Pretrained = pretrained }, seed, out var s3), s3);
            if (!skip.Contains("baseline"))
            {
                var clock = Stopwatch.StartNew();
                var predicted = CnnLstmBaseline.TrainAndPredict(train, test, OneObjectScenes.AllAnswers, epochs: baselineEpochs, seed: seed);
                Add($"CNN+LSTM (32x24 pixels, {baselineEpochs} epochs)", predicted, clock.Elapsed.TotalSeconds);
            }
        }
        Console.WriteLine();
        Console.WriteLine("| generator | model | colour | shape | train+eval s |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: |");
        foreach (var r in rows) Console.WriteLine($"| {r.Generator} | {r.Model} | {r.Colour:F2} | {r.Shape:F2} | {r.Seconds:F0} |");
    }

    private static string[] Mblm(List<VqaExample> train, List<VqaExample> test, MblmAnswerClassifierTrainer.Options options, int seed, out double seconds)
    {
        var clock = Stopwatch.StartNew();
        var ml = new MLContext(seed);
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Answer", keyData: ClevrLikeGenerator.AnswerKeyData(ml, OneObjectScenes.AllAnswers))
            .Append(ml.Mblm().AnswerClassifier(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedAnswer", "PredictedLabel"));
        using var model = pipeline.Fit(ClevrLikeGenerator.ToDataView(ml, train));
        var predicted = model.Transform(ClevrLikeGenerator.ToDataView(ml, test)).GetColumn<string>("PredictedAnswer").ToArray();
        seconds = clock.Elapsed.TotalSeconds;
        return predicted;
    }
}
