// Tokenizer-free text classification on real labelled text: the MBLM text classifier against ML.NET's classic text
// pipelines (FeaturizeText + SdcaMaximumEntropy, FeaturizeText + LightGbm) and against the MBLM language model's Features
// + SDCA, on tasks built at run time from files that installed Debian packages ship (gettext catalogs, headers, scripts,
// configs, modules); nothing is generated or stored. Prints one table: per task and model, held-out accuracy,
// macro-accuracy, log-loss, fit time and scoring rows per second.
//
//   dotnet run -c Release --project examples/TextClassification              # default size: about 15-20 minutes on 2 busy CPU cores
//   dotnet run -c Release --project examples/TextClassification -- --quick   # a smoke run: tiny sizes, one epoch
//   dotnet run -c Release --project examples/TextClassification -- --experiment [--budget 300 --seeds 1,2,3 --max-steps 270]
//                                                                 # ASHA vs random search at the same budget (language task)
//   options: --rows N (training rows per task) --test-rows N --epochs N (MBLM classifier) --lm-epochs N (language model)
//            --short-bytes N (the short-input variant) --seed N --tasks languages,code --languages es,pt_BR,…
//            --models sdca,lightgbm,lm-sdca,mblm,mblm-likelihood,hybrid,hybrid-pretrained,mblm-transfer,mblm-unaligned --edits 5,10,20
//            --lr X --text-loss W --spans 0|1 --shift 0|1 (MBLM classifier options)
//            --variants full|short|full,short   --transfer-from LM.zip (also fine-tune from a language model pipeline
//            pretrained elsewhere, e.g. by `benchmarks … transfer --keep-lm LM.zip`; same model shape as the classifier's)
//            --pretrained NAME|DIR (also fine-tune from a pretrained model folder, e.g. mblm-base: the classifier takes its shape)
//   dotnet run -c Release --project examples/TextClassification -- --fragments [--fragment-bytes 256,4096] [--fragment-rows 1200,12000]
//            [--models sdca,lightgbm,featurize,mblm] [--pretrained NAME|DIR] [--epochs N] [--seed N]
//                                                                 # which kind of file a fragment from inside a file comes from

using System.Diagnostics;
using System.Globalization;
using Mblm.Config;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;
using Mblm.MLNet.Text;
using Microsoft.ML;
using TextClassification;

CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var flags = args.Select((a, i) => (a, i)).Where(x => x.a.StartsWith("--", StringComparison.Ordinal))
    .ToDictionary(x => x.a[2..], x => x.i + 1 < args.Length && !args[x.i + 1].StartsWith("--", StringComparison.Ordinal) ? args[x.i + 1] : "true");
string Flag(string name, string fallback) => flags.TryGetValue(name, out var v) ? v : fallback;
bool quick = flags.ContainsKey("quick");
int rows = int.Parse(Flag("rows", quick ? "240" : "1200")), testRows = int.Parse(Flag("test-rows", (rows / 4).ToString()));
int epochs = int.Parse(Flag("epochs", quick ? "1" : "8")), lmEpochs = int.Parse(Flag("lm-epochs", quick ? "1" : "3"));
int shortBytes = int.Parse(Flag("short-bytes", "64")), seed = int.Parse(Flag("seed", "1"));
var tasks = Flag("tasks", "languages,code").Split(',', StringSplitOptions.RemoveEmptyEntries);
var languages = Flag("languages", "es,pt_BR,it,fr,da,sv,ru,uk").Split(',', StringSplitOptions.RemoveEmptyEntries);
var models = Flag("models", "sdca,lightgbm,lm-sdca,mblm,mblm-transfer").Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
Console.WriteLine($"rows {rows} training + {testRows} held-out per task, MBLM classifier {epochs} epochs, language model {lmEpochs} epochs, seed {seed}, short inputs ≤ {shortBytes} bytes");

if (flags.ContainsKey("experiment"))
{
    // ASHA vs random search at the same budget (see ExperimentBench).
    string dir = Path.Combine(Path.GetTempPath(), $"mblm-experiment-{Environment.ProcessId}");
    ExperimentBench.Run(Datasets.Languages(languages, rows, testRows, seed), TimeSpan.FromSeconds(double.Parse(Flag("budget", "300"))),
        Flag("seeds", "1,2,3").Split(',').Select(int.Parse).ToArray(), long.Parse(Flag("max-steps", "270")), dir);
    return;
}

var results = new List<Result>();
if (flags.ContainsKey("fragments"))
{
    var fragmentModels = Flag("models", "sdca,lightgbm,featurize,mblm").Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
    Fragments.Run(Flag("fragment-bytes", "256,4096").Split(',').Select(int.Parse).ToArray(), Flag("fragment-rows", "1200").Split(',').Select(int.Parse).ToArray(),
        seed, flags.TryGetValue("pretrained", out var p) ? p : null, epochs, fragmentModels, results);
    PrintTable(results);
    return;
}
string work = Path.Combine(Path.GetTempPath(), $"mblm-textclf-{Environment.ProcessId}");
Directory.CreateDirectory(work);
try
{
    foreach (var name in tasks)
    {
        var clock = Stopwatch.StartNew();
        var task = name switch
        {
            "languages" => Datasets.Languages(languages, rows, testRows, seed),
            "code" => Datasets.Code(rows, testRows, seed),
            _ => throw new ArgumentException($"--tasks: unknown task '{name}' (languages, code)"),
        };
        Console.WriteLine($"\n{task.Summary()}\n  built in {clock.Elapsed.TotalSeconds:F0} s from {task.How}");
        Console.WriteLine($"  e.g. [{task.Train[0].Class}] {Shown(task.Train[0].Text)}");

        // One language model per task, trained on its training rows (no labels): Features for SDCA, and the start of the
        // transferred classifier. Its time counts in "LM Features + SDCA"'s fit time.
        string lmPath = Path.Combine(work, $"{name}-lm.zip");
        double lmSeconds = 0;
        MblmLanguageModelTransformer? lm = null;
        if (models.Contains("lm-sdca") || models.Contains("mblm-transfer"))
        {
            var ml = new MLContext(seed);
            var data = Runs.Load(ml, task.Train);
            clock.Restart();
            lm = ml.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options
            {
                InputColumnName = "Text", ModelConfig = MblmPresets.Small, MaxEpochs = lmEpochs, Progress = new Bar("language model"),
            }).Fit(data);
            lmSeconds = clock.Elapsed.TotalSeconds;
            ml.Mblm().SaveModel(lm, data.Schema, lmPath);
            Console.WriteLine($"  language model ({MblmPresets.Small.CountParameters():N0} parameters): {lm.Training.Steps} steps, {lmSeconds:F0} s");
        }
        var variants = Flag("variants", "full,short") switch
        {
            "full" => new[] { task },
            "short" => new[] { task.Short(shortBytes) },
            _ => new[] { task, task.Short(shortBytes) },
        };
        foreach (var variant in variants)
        {
            Console.WriteLine($"  {variant.Name}:");
            var run = new Runs(variant, seed, results, flags.TryGetValue("edits", out var edits) ? edits.Split(',').Select(int.Parse).ToArray() : null);
            if (models.Contains("sdca"))
                run.Classic("FeaturizeText + SdcaMaximumEntropy", ml => ml.MulticlassClassification.Trainers.SdcaMaximumEntropy());
            if (models.Contains("lightgbm"))
                run.Classic("FeaturizeText + LightGbm", ml => ml.MulticlassClassification.Trainers.LightGbm());
            if (lm is not null && models.Contains("lm-sdca"))
                run.LanguageModelFeatures("MBLM LM Features + SDCA", lm, lmSeconds);
            var options = new MblmTextClassifierTrainer.Options { MaxEpochs = epochs };
            if (flags.TryGetValue("lr", out var lr)) options = options with { LearningRate = double.Parse(lr) };
            if (flags.TryGetValue("text-loss", out var tl)) options = options with { TextLossWeight = double.Parse(tl) };
            if (flags.TryGetValue("spans", out var sp)) options = options with { RandomSpans = sp is "1" or "true" };
            if (flags.TryGetValue("shift", out var sh)) options = options with { RandomPatchShift = sh is "1" or "true" };
            if (models.Contains("mblm"))
                run.Mblm("MBLM text classifier", options);
            if (models.Contains("hybrid"))
                run.Hybrid("MBLM features + FeaturizeText + SDCA", options);
            if (models.Contains("hybrid-pretrained") && flags.TryGetValue("pretrained", out var hp))
                run.Hybrid($"MBLM features ({Path.GetFileName(hp.TrimEnd('/'))}) + FeaturizeText + SDCA", options with { Pretrained = hp });
            if (models.Contains("mblm-likelihood"))
                run.Mblm("MBLM text classifier, label likelihood", options with { Objective = Mblm.MLNet.Classification.MblmClassifierObjective.LabelLikelihood });
            if (models.Contains("mblm-unaligned"))
                run.Mblm("MBLM text classifier, class not patch-aligned", options with { AlignClassToPatch = false });
            if (lm is not null && models.Contains("mblm-transfer"))
                run.Mblm("MBLM text classifier, TransferFrom LM", options with { TransferFrom = lmPath });
            if (flags.TryGetValue("pretrained", out var pretrained))
                run.Mblm($"MBLM text classifier, from the pretrained {Path.GetFileName(pretrained.TrimEnd('/'))}", options with { Pretrained = pretrained });
            if (flags.TryGetValue("transfer-from", out var general))
                run.Mblm("MBLM text classifier, TransferFrom a general text LM", options with { TransferFrom = Path.GetFullPath(general) });
        }
        lm?.Dispose();
    }
}
finally { Directory.Delete(work, recursive: true); }

PrintTable(results);
Console.WriteLine("\nfit s of \"MBLM LM Features + SDCA\" includes training the language model; \"TransferFrom LM\" starts from that model, whose training time is not included.");

static void PrintTable(List<Result> results)
{
    Console.WriteLine();
    Console.WriteLine("| task | model | accuracy | macro-accuracy | log-loss | fit s | scoring rows/s | PredictionEngine ms/row |");
    Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    foreach (var r in results)
        Console.WriteLine($"| {r.Task} | {r.Model} | {r.Accuracy:F3} | {r.MacroAccuracy:F3} | {r.LogLoss:F3} | {r.FitSeconds:F1} | {r.RowsPerSecond:F0} | " +
                          (r.PredictMilliseconds is double ms ? $"{ms:F2}" : "") + " |");
}

static string Shown(string text) => (text.Length <= 70 ? text : text[..70] + "…").ReplaceLineEndings("⏎");
