using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Mblm.Config;
using Mblm.Pretraining;
using Mblm.Training;
using Mblm.Weights;
using static TorchSharp.torch;

namespace Mblm.Cli;

/// <summary>
/// <c>mblm pretrain</c>: gathers a corpus from installed files (or reads a manifest), trains with the shared trainer under
/// the warm-up–stable–decay schedule (a later run with more steps and <c>--resume</c> extends it) and an optional
/// wall-clock budget, then measures held-out bits per byte per kind and writes a model folder: <c>config.json</c>,
/// <c>model.safetensors</c> and a model card (<c>README.md</c>).
/// </summary>
internal static class PretrainCommand
{
    public static int Run(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string configPath = args.Required("config"), outDir = args.Required("out");
        string? corpusPath = args.Optional("corpus");
        long steps = args.Long("steps", 1) ?? throw new UsageException("--steps is required");
        int batch = args.Int("batch", 1) ?? 8;
        double lr = args.Double("lr", 0, minExclusive: true) ?? 1e-3;
        long every = args.Long("checkpoint-every", 1) ?? Math.Max(1, steps / 20);
        long seed = args.Long("seed") ?? 0;
        double? minutes = args.Double("minutes", 0, minExclusive: true);
        long evalBytes = args.Long("eval-bytes-per-kind", 1) ?? 64 << 10;
        // A fixed warm-up (not a fraction of --steps): a later run with more steps is then the same run up to its decay.
        long warmup = args.Long("warmup-steps", 0) ?? 100;
        string? maxBytes = args.Optional("max-bytes-per-kind");
        int heldOutPercent = args.Int("held-out-percent", 1, 50) ?? 5;
        bool resume = args.Switch("resume");
        var device = DeviceOption.Parse(args.Optional("device"));
        args.RejectUnknown("pretrain");
        CliPaths.InputFile("config", configPath);
        if (corpusPath is not null) CliPaths.InputFile("corpus", corpusPath);
        CliPaths.OutputDirectory("out", outDir);
        long perKind = maxBytes is null ? 16L << 20
            : Limits.ParseBytes(maxBytes) ?? throw new UsageException($"--max-bytes-per-kind must be a size such as 16M or a byte count, got '{maxBytes}'");

        var file = CliModel.LoadFile(configPath);
        var config = file.Model;
        int window = EvalCommand.WindowOf(file);
        Directory.CreateDirectory(outDir);

        // The corpus: the manifest given, else the one a previous run of this folder wrote (resume), else a new one.
        string manifestPath = Path.Combine(outDir, "corpus.json");
        CorpusManifest manifest;
        if (corpusPath is not null) manifest = Errors.Reading("corpus", corpusPath, () => CorpusManifest.Load(corpusPath));
        else if (resume && File.Exists(manifestPath)) manifest = Errors.Reading("corpus", manifestPath, () => CorpusManifest.Load(manifestPath));
        else
        {
            stderr.WriteLine("mblm pretrain: gathering the corpus from installed files …");
            manifest = CorpusManifest.Build(CorpusKind.Installed, new CorpusOptions { MaxBytesPerKind = perKind, HeldOutPercent = heldOutPercent });
        }
        if (corpusPath is null || Path.GetFullPath(corpusPath) != Path.GetFullPath(manifestPath)) manifest.Save(manifestPath);
        stderr.WriteLine(manifest.Summary());
        CorpusSource train, heldOut;
        try
        {
            train = new CorpusSource(manifest, heldOut: false, window, samplesPerEpoch: Math.Max(1, Math.Min(steps * batch, 1L << 40)), seed);
            heldOut = new CorpusSource(manifest, heldOut: true, window, samplesPerEpoch: 1, seed, verify: true);
        }
        catch (ArgumentException e) { throw new InvalidInputException($"corpus: {e.Message}", e); }

        var options = new TrainerOptions
        {
            Steps = steps, BatchSize = batch, LearningRate = lr, Seed = seed, OutputDirectory = outDir, CheckpointEvery = every,
            Schedule = LearningRateScheduleKind.WarmupStableDecay, WarmupSteps = warmup,
        };
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException($"training options: {e.Message}"); }

        manual_seed(seed);
        using var model = CliModel.Load(config, null, device);
        stderr.WriteLine($"mblm pretrain: {config.CountParameters():N0} parameters, windows of {window} bytes, batch {batch}, {steps} steps" +
                         (minutes is double m ? $", at most {m:G4} minutes" : "") + $", device {device.type}");
        var progress = new ProgressLine(stderr);
        var clock = Stopwatch.StartNew();
        using var budget = CancellationTokenSource.CreateLinkedTokenSource(Interrupt.Token);
        if (minutes is double limit) budget.CancelAfter(TimeSpan.FromMinutes(limit));
        long done;
        bool stoppedByBudget = false;
        try
        {
            TrainingResult result;
            using (Interrupt.Listen()) result = new Trainer(model, options).Train(train, null, progress, resume, budget.Token);
            progress.Finish();
            if (result.ResumedFromStep is long from) stderr.WriteLine($"mblm pretrain: resumed from step {from}");
            done = result.Steps;
        }
        catch (OperationCanceledException) when (budget.IsCancellationRequested)
        {
            progress.Finish();
            string? newest = CheckpointStore.Newest(outDir);
            if (Interrupt.Token.IsCancellationRequested)
            {
                stderr.WriteLine($"mblm pretrain: interrupted{(newest is null ? "" : $" at step {CheckpointStore.StepOf(newest)}")}: run the same command with --resume to continue");
                return ExitCodes.Interrupted;
            }
            stoppedByBudget = true;
            done = newest is null ? 0 : CheckpointStore.StepOf(newest) ?? 0;
            stderr.WriteLine($"mblm pretrain: the time budget is spent at step {done}; the same command with --resume continues");
        }
        catch (InvalidOperationException e) when (e is not CheckpointMismatchException) { throw new InvalidInputException(e.Message, e); }
        finally { progress.Finish(); }
        var wall = clock.Elapsed;

        var bitsPerByte = heldOut.BitsPerBytePerKind(model, evalBytes, batch);
        string modelDir = Path.Combine(outDir, "model");
        Directory.CreateDirectory(modelDir);
        File.WriteAllText(Path.Combine(modelDir, "config.json"), ConfigWriter.ToJson(config));
        ModelWeights.Save(model, Path.Combine(modelDir, "model.safetensors"));
        File.WriteAllText(Path.Combine(modelDir, "README.md"), Card(config, manifest, done, (long)done * batch * window, wall, bitsPerByte, stoppedByBudget));
        stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["steps"] = done, ["stopped_by_time_budget"] = stoppedByBudget, ["model"] = modelDir,
            ["held_out_bits_per_byte"] = bitsPerByte.ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value, 4)),
        }));
        return 0;
    }

    // The model card: what was trained, on what, how long, and how well on each kind's held-out files.
    private static string Card(MblmConfig config, CorpusManifest manifest, long steps, long bytesSeen, TimeSpan wall,
        IReadOnlyDictionary<string, double> bitsPerByte, bool stoppedByBudget)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# MBLM base model").AppendLine();
        string stages = string.Join(", ", config.Blocks.Select((b, i) => $"{b.BlockType} (dim {config.HiddenDims[i]}, {config.NumLayers[i]} layers)"));
        sb.AppendLine(CultureInfo.InvariantCulture, $"- parameters: {config.CountParameters():N0}; context {config.MaxContext} bytes; stages: {stages}");
        string stopped = stoppedByBudget ? " (stopped by the time budget)" : "";
        sb.AppendLine(CultureInfo.InvariantCulture, $"- training: {steps:N0} optimiser steps, {bytesSeen:N0} bytes seen, {wall:hh\\:mm\\:ss} wall time{stopped}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"- machine: {Environment.ProcessorCount} logical CPUs, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"- corpus: {manifest.Files.Count:N0} files, {manifest.Files.Sum(f => f.Size):N0} bytes, " +
                      $"{manifest.DuplicatesSkipped:N0} duplicates left out (corpus.json lists every file with its SHA-256)");
        sb.AppendLine().AppendLine("| kind | weight | files | bytes | held-out files | held-out bits per byte |").AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var (kind, weight) in manifest.Weights)
        {
            var of = manifest.Files.Where(f => f.Kind == kind).ToList();
            string bpb = bitsPerByte.TryGetValue(kind, out var v) ? v.ToString("F3", CultureInfo.InvariantCulture) : "-";
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {kind} | {weight} | {of.Count:N0} | {of.Sum(f => f.Size):N0} | {of.Count(f => f.HeldOut):N0} | {bpb} |");
        }
        sb.AppendLine().AppendLine("Files: `config.json` (the reference's keys) and `model.safetensors` (the reference's state-dict names).");
        return sb.ToString();
    }
}
