// A plug-in stage block end to end: register an LSTM block once, load a config file that uses "block_type": "lstm" for
// the global stage, train it through an ML.NET pipeline, evaluate, save the pipeline, load it back and continue a prompt.
//
//   dotnet run --project examples/CustomBlock                    # trains on the embedded README for 60 steps
//   options: --data FILE  --max-steps N  --config FILE  --out DIR

using System.Reflection;
using CustomBlock;
using Mblm.Config;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Microsoft.ML;

var flags = args.Select((a, i) => (a, i)).Where(p => p.a.StartsWith("--")).ToDictionary(p => p.a[2..], p => p.i + 1 < args.Length ? args[p.i + 1] : "");
string Get(string name, string fallback) => flags.TryGetValue(name, out var v) ? v : fallback;

// 1. Register the block type once per process, before reading a config or loading a pipeline that uses it.
StageBlocks.Register<LstmBlockConfig>("lstm");
var config = ConfigReader.LoadModel(Get("config", Path.Combine(AppContext.BaseDirectory, "lstm.json")));
Console.WriteLine($"config: {string.Join(" / ", config.Blocks.Select((b, i) => b.Describe(config.HiddenDims[i])))}; " +
                  $"{config.CountParameters():N0} parameters, context {config.MaxContext} bytes");

// 2. Data: rows of text.
string text = flags.ContainsKey("data") ? File.ReadAllText(Get("data", "")) : Embedded("corpus/README.md");
var rows = TextRows.Split(text, maxBytes: (int)config.MaxContext);
var ml = new MLContext(seed: 1);
var train = ml.Data.LoadFromEnumerable(rows.Where((_, i) => i % 10 != 9).Select(t => new Row { Text = t }));
var test = ml.Data.LoadFromEnumerable(rows.Where((_, i) => i % 10 == 9).Select(t => new Row { Text = t }));

// 3. Train, evaluate, save, load, predict: the block is an ordinary stage to the pipeline.
var pipeline = ml.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options
{
    InputColumnName = "Text", ModelConfig = config, MaxSteps = long.Parse(Get("max-steps", "60")), MaxNewBytes = 48,
});
using var model = pipeline.Fit(train);
Console.WriteLine($"trained {model.Training.Steps} steps; validation {ml.Mblm().Evaluate(model.Transform(test)).BitsPerByte:F3} bits per byte");
string outDir = Get("out", Path.Combine("out", "custom-block"));
Directory.CreateDirectory(outDir);
string path = Path.Combine(outDir, "model.zip");
ml.Mblm().SaveModel(model, train.Schema, path);
var loaded = ml.Mblm().LoadModel(path, out _);
var engine = ml.Model.CreatePredictionEngine<Row, Scored>(loaded);
var p = engine.Predict(new Row { Text = "The model " });
Console.WriteLine($"reloaded from {path}: {p.BitsPerByte:F2} bits per byte; \"The model \" continues: {p.Completion}");

static string Embedded(string name)
{
    using var s = Assembly.GetExecutingAssembly().GetManifestResourceStream(name) ?? throw new InvalidOperationException($"resource {name} is missing");
    return new StreamReader(s).ReadToEnd();
}

/// <summary>An input row.</summary>
public sealed class Row { public string Text { get; set; } = ""; }

/// <summary>The columns read back.</summary>
public sealed class Scored
{
    public float BitsPerByte { get; set; }
    public string Completion { get; set; } = "";
}
