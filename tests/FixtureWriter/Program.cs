// Writes small pipeline files, saved with mlContext.Mblm().SaveModel, and the outputs they give for a few fixed input rows.
// The test Fixture_pipelines_saved_by_format_version_1_still_load (tests/Mblm.Tests/MLNet/FixtureTests.cs) loads each file
// through the public API and checks the outputs, so files written by an older Mblm.MLNet keep loading.
//
//   dotnet run --project tests/FixtureWriter -- tests/Mblm.Tests/Fixtures
//
// Files: <name>.zip (the pipeline) and <name>.json (format version, the input rows and the expected outputs).
// Do not regenerate the committed version-1 fixtures to make a failing test pass: they stand for files users already have.
// A new format version gets new fixture files (change Prefix) beside the old ones.

using System.Globalization;
using System.Text.Json;
using Mblm.Config;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Mblm.Examples;
using Mblm.MLNet.Vision;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Text;

CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
const string Prefix = "v1";
string dir = Path.GetFullPath(args.Length > 0 ? args[0] : "tests/Mblm.Tests/Fixtures");
Directory.CreateDirectory(dir);
var json = new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

// Two stages, each with a transformer in front of it and one after it.
StageBlockConfig Block(PosEmbType pos) => new TransformerBlockConfig { AttnHeadDims = 8, AttnNumHeads = 2, AttnUseRotEmbs = true, PosEmbType = pos };
MblmConfig Tiny(int numTokens, int globalLength) => new MblmConfig
{
    NumTokens = numTokens, PadTokenId = 256, HiddenDims = [32, 16], SeqLens = [globalLength, 4], NumLayers = [1, 1],
    Blocks = [Block(PosEmbType.None), Block(PosEmbType.Fixed)],
}.Validate();

// (a) A language model: NormalizeText -> MBLM (with completions) -> NormalizeMinMax.
{
    var ml = new MLContext(seed: 1);
    var corpus = Enumerable.Range(0, 40).Select(i => new TextRow
    {
        Text = $"Row {i}: The quick brown fox jumps over the lazy dog while {i % 7} cats sleep." + (i % 5 == 0 ? " Ünïcödé ✓, and a longer tail that needs two windows." : ""),
    }).ToList();
    var train = ml.Data.LoadFromEnumerable(corpus);
    var pipeline = ml.Transforms.Text.NormalizeText("Text", caseMode: TextNormalizingEstimator.CaseMode.Lower)
        .Append(ml.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options
        {
            ModelConfig = Tiny(257, 16), MaxSteps = 20, BatchSize = 8, LearningRate = 5e-3, MaxNewBytes = 8, ScoringBatchSize = 4,
        }))
        .Append(ml.Transforms.NormalizeMinMax("Scaled", "Features"));
    using var model = pipeline.Fit(train);
    string path = Path.Combine(dir, $"{Prefix}-language-model.zip");
    ml.Mblm().SaveModel(model, train.Schema, path);

    string[] inputs = ["Row 3: the quick brown fox", "A NEW ROW, never seen before, with Ünïcödé ✓", "cats sleep while the fox jumps over the lazy dog and more text than one window holds"];
    var scored = model.Transform(ml.Data.LoadFromEnumerable(inputs.Select(t => new TextRow { Text = t })));
    var bpb = scored.GetColumn<float>("BitsPerByte").ToArray();
    var features = scored.GetColumn<float[]>("Features").ToArray();
    var scaled = scored.GetColumn<float[]>("Scaled").ToArray();
    var completion = scored.GetColumn<string>("Completion").ToArray();
    var expected = new LanguageModelFixture(1, inputs.Select((t, i) => new LanguageModelRow(t, bpb[i], features[i], scaled[i], completion[i])).ToList());
    File.WriteAllText(Path.Combine(dir, $"{Prefix}-language-model.json"), JsonSerializer.Serialize(expected, json));
    Console.WriteLine($"{path}: {new FileInfo(path).Length} bytes");
}

// (b) An answer classifier: MapValueToKey -> MBLM VQA -> MapKeyToValue, images as PNG file bytes.
{
    var ml = new MLContext(seed: 1);
    var train = ClevrLikeGenerator.ToDataView(ml, new ClevrLikeGenerator(seed: 2).Generate(16, 3));
    var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Answer", keyData: ClevrLikeGenerator.AnswerKeyData(ml))
        .Append(ml.Mblm().AnswerClassifier(new MblmAnswerClassifierTrainer.Options
        {
            ModelConfig = Tiny(260, 128), Image = new ImageByteOptions { ResizeWidth = 8, ResizeHeight = 6, Levels = 8 },
            MaxSteps = 6, BatchSize = 8, LearningRate = 5e-3, ScoringBatchSize = 2,
        }))
        .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedAnswer", "PredictedLabel"));
    using var model = pipeline.Fit(train);
    string path = Path.Combine(dir, $"{Prefix}-answer-classifier.zip");
    ml.Mblm().SaveModel(model, train.Schema, path);

    var test = ml.Data.CreateEnumerable<VqaRow>(ClevrLikeGenerator.ToDataView(ml, new ClevrLikeGenerator(seed: 3).Generate(2, 2)), false).ToList();
    var scored = model.Transform(ml.Data.LoadFromEnumerable(test));
    var scores = scored.GetColumn<float[]>("Score").ToArray();
    var predicted = scored.GetColumn<string>("PredictedAnswer").ToArray();
    var expected = new AnswerClassifierFixture(1, test.Select((r, i) => new AnswerClassifierRow(Convert.ToBase64String(r.Image), r.Question, r.Answer, scores[i], predicted[i])).ToList());
    File.WriteAllText(Path.Combine(dir, $"{Prefix}-answer-classifier.json"), JsonSerializer.Serialize(expected, json));
    Console.WriteLine($"{path}: {new FileInfo(path).Length} bytes");
}

// (c) A text classifier: MapValueToKey -> MBLM text classifier -> MapKeyToValue. The committed v1-text-classifier files
// were written by this section at commit 08bbcb0, whose text classifier had one objective (label likelihood, stage
// layout 1); run today it writes the current layout.
{
    var ml = new MLContext(seed: 3);
    string[] kinds = ["greeting", "number", "code"];
    string RowText(int i) => (i % 3) switch
    {
        0 => $"hello there friend number {i}, good morning",
        1 => $"{i * 7919 % 10007} {i * 31 % 97} {i}",
        _ => $"int x{i} = y + {i}; return x{i};",
    };
    var rows = Enumerable.Range(0, 36).Select(i => new TextKindRow { Text = RowText(i), Kind = kinds[i % 3] }).ToList();
    var train = ml.Data.LoadFromEnumerable(rows);
    var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Kind")
        .Append(ml.Mblm().TextClassifier(new Mblm.MLNet.Text.MblmTextClassifierTrainer.Options
        {
            ModelConfig = Tiny(260, 16), MaxSteps = 20, BatchSize = 8, LearningRate = 5e-3, ScoringBatchSize = 4,
        }))
        .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedKind", "PredictedLabel"));
    using var model = pipeline.Fit(train);
    string path = Path.Combine(dir, $"{Prefix}-text-classifier.zip");
    ml.Mblm().SaveModel(model, train.Schema, path);

    string[] inputs = ["hello there friend", "4242 17 9", "int q = y + 1; return q;", ""];
    var scored = model.Transform(ml.Data.LoadFromEnumerable(inputs.Select(t => new TextKindRow { Text = t, Kind = "code" })));
    var scores = scored.GetColumn<float[]>("Score").ToArray();
    var predicted = scored.GetColumn<string>("PredictedKind").ToArray();
    var expected = new TextClassifierFixture(1, inputs.Select((t, i) => new TextClassifierRow(t, scores[i], predicted[i])).ToList());
    File.WriteAllText(Path.Combine(dir, $"{Prefix}-text-classifier.json"), JsonSerializer.Serialize(expected, json));
    Console.WriteLine($"{path}: {new FileInfo(path).Length} bytes");
}

internal sealed class TextRow
{
    public string Text { get; set; } = "";
}

internal sealed record LanguageModelRow(string Text, float BitsPerByte, float[] Features, float[] Scaled, string Completion);

internal sealed record LanguageModelFixture(int FormatVersion, List<LanguageModelRow> Rows);

internal sealed record AnswerClassifierRow(string ImagePng, string Question, string Answer, float[] Score, string PredictedAnswer);

internal sealed record AnswerClassifierFixture(int FormatVersion, List<AnswerClassifierRow> Rows);

internal sealed class TextKindRow
{
    public string Text { get; set; } = "";
    public string Kind { get; set; } = "";
}

internal sealed record TextClassifierRow(string Text, float[] Score, string PredictedKind);

internal sealed record TextClassifierFixture(int FormatVersion, List<TextClassifierRow> Rows);
