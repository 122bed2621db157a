// Serving an MBLM pipeline over HTTP: an ASP.NET Core minimal API that loads a saved pipeline once and scores texts
// (POST /score {"text": "..."} -> {"bitsPerByte": ...}), with a built-in load test.
//
//   dotnet run -c Release --project examples/Serving -- --model out/quickstart/model.zip        # serve on http://localhost:5000
//   dotnet run -c Release --project examples/Serving -- --load-test                              # fit a small model, load-test it
//   options: --model PATH (a pipeline saved with mlContext.Mblm().SaveModel; without it a small language model is fitted
//            on this example's sources)  --urls URL  --load-test  --clients 1,2,4,8  --seconds 10  --steps 60
//
// The load test starts the server in this process on a free port and runs closed-loop clients against it; it prints
// requests per second and p50/p99 latency per level.

using System.Globalization;
using System.Reflection;
using Mblm.Examples.Serving;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Microsoft.ML;

var flags = args.Select((a, i) => (a, i)).Where(p => p.a.StartsWith("--", StringComparison.Ordinal))
    .ToDictionary(p => p.a[2..], p => p.i + 1 < args.Length && !args[p.i + 1].StartsWith("--", StringComparison.Ordinal) ? args[p.i + 1] : "true");
string Flag(string name, string fallback) => flags.TryGetValue(name, out var v) ? v : fallback;
bool loadTest = flags.ContainsKey("load-test");

var texts = TextRows.Split(EmbeddedSources(), maxBytes: 256).Where(t => t.Length >= 64).ToList();
string modelPath = flags.TryGetValue("model", out var given) ? given : FitSmallModel(texts, int.Parse(Flag("steps", "60"), CultureInfo.InvariantCulture));

var (app, service) = ScoringService.Build(modelPath, Flag("urls", loadTest ? "http://127.0.0.1:0" : "http://localhost:5000"));
using (service)
{
    if (!loadTest)
    {
        Console.WriteLine($"serving {modelPath}: POST /score {{\"text\": \"...\"}}");
        await app.RunAsync();
        return;
    }
    await app.StartAsync();
    var server = new Uri(app.Urls.First());
    int[] clients = Flag("clients", "1,2,4,8").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
    var seconds = TimeSpan.FromSeconds(double.Parse(Flag("seconds", "10"), CultureInfo.InvariantCulture));
    Console.WriteLine($"load test of {server}score: {texts.Count} texts of 64-256 bytes, {seconds.TotalSeconds:F0} s a level, {Environment.ProcessorCount} cores");
    var levels = await LoadTest.RunAsync(server, texts, clients, seconds);
    Console.WriteLine(LoadTest.Table(levels));
    Console.WriteLine($"scaling from 1 client to {levels[^1].Clients}: x{levels[^1].Throughput / levels[0].Throughput:F2} throughput");
    await app.StopAsync();
}

// A small language model fitted on this example's own sources, saved to a temp file (when no --model is given).
static string FitSmallModel(List<string> texts, int steps)
{
    var ml = new MLContext(seed: 1);
    var data = ml.Data.LoadFromEnumerable(texts.Select(t => new TextInput { Text = t }));
    Console.WriteLine($"no --model: fitting a small language model on this example's sources ({steps} steps)");
    using var model = ml.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options { InputColumnName = "Text", MaxSteps = steps }).Fit(data);
    string path = Path.Combine(Path.GetTempPath(), $"mblm-serving-{Environment.ProcessId}.zip");
    ml.Mblm().SaveModel(model, data.Schema, path);
    return path;
}

static string EmbeddedSources()
{
    var asm = Assembly.GetExecutingAssembly();
    return string.Join("\n", asm.GetManifestResourceNames().Order(StringComparer.Ordinal)
        .Select(n => new StreamReader(asm.GetManifestResourceStream(n)!).ReadToEnd()));
}
