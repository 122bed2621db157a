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
        bool resume = args.Switch("resume"), bfloat16 = args.Switch("store-bf16"), compare = !args.Switch("no-compressors");
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
        var started = DateTimeOffset.UtcNow;
        long? startStep = resume && CheckpointStore.Newest(outDir) is { } before ? CheckpointStore.StepOf(before) : 0;
        string command = "mblm pretrain " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1).SkipWhile(a => a != "pretrain").Skip(1));
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
            startStep = result.ResumedFromStep ?? 0;
            done = result.Steps;
        }
        catch (OperationCanceledException) when (budget.IsCancellationRequested)
        {
            progress.Finish();
            string? newest = CheckpointStore.Newest(outDir);
            if (Interrupt.Token.IsCancellationRequested)
            {
                RunLog.Append(outDir, new RunLog.Entry(started, clock.Elapsed.TotalSeconds, startStep ?? 0, newest is null ? 0 : CheckpointStore.StepOf(newest) ?? 0, steps, "interrupted", command));
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
        RunLog.Append(outDir, new RunLog.Entry(started, wall.TotalSeconds, startStep ?? 0, done, steps, stoppedByBudget ? "time budget" : "finished", command));
        if (bfloat16)
        {
            // The card measures the model as stored: its weights rounded to BF16.
            using var noGrad = no_grad();
            foreach (var p in model.parameters()) p.copy_(p.to(ScalarType.BFloat16).to(p.dtype));
        }

        // Each kind's held-out files are read once: the model and the compressors see the same bytes.
        var evaluation = heldOut.Kinds.Select(kind =>
        {
            var files = heldOut.EvaluationFiles(kind, evalBytes);
            return new KindResult(kind, files.Count, files.Sum(f => (long)f.Length), heldOut.BitsPerByte(model, files, batch),
                compare ? Compressors.BitsPerByte(files, window) : [], compare ? Compressors.BitsPerByte(files, null) : []);
        }).ToList();
        string modelDir = Path.Combine(outDir, "model");
        MblmPretrained.Save(model, modelDir, Card(config, manifest, done, (long)done * batch * window, RunLog.Read(outDir), evaluation, window, stoppedByBudget, bfloat16), bfloat16);
        stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["steps"] = done, ["stopped_by_time_budget"] = stoppedByBudget, ["model"] = modelDir,
            ["held_out_bits_per_byte"] = evaluation.ToDictionary(e => e.Kind, e => Math.Round(e.Model, 4)),
            ["compressors_at_equal_context"] = evaluation.ToDictionary(e => e.Kind, e => e.Chunked.ToDictionary(c => c.Key, c => c.Value is double v ? Math.Round(v, 4) : (double?)null)),
            ["compressors_on_whole_files"] = evaluation.ToDictionary(e => e.Kind, e => e.Whole.ToDictionary(c => c.Key, c => c.Value is double v ? Math.Round(v, 4) : (double?)null)),
        }));
        return 0;
    }

    /// <summary>The log of the command's runs in a folder (<c>runs.jsonl</c>, a JSON line per run that ended, interrupted or not): the card's training time.</summary>
    internal static class RunLog
    {
        /// <summary>One run: when it started, its wall time, the steps it went from and to, the target, how it ended and the command.</summary>
        internal sealed record Entry(DateTimeOffset Started, double WallSeconds, long FromStep, long ToStep, long Target, string Outcome, string Command);

        private const int MaxLines = 10_000;

        public static void Append(string dir, Entry entry) =>
            File.AppendAllText(Path.Combine(dir, "runs.jsonl"), JsonSerializer.Serialize(entry) + "\n");

        /// <summary>The runs logged so far (lines that are not a run are skipped; at most the first 10,000).</summary>
        public static IReadOnlyList<Entry> Read(string dir)
        {
            string path = Path.Combine(dir, "runs.jsonl");
            if (!File.Exists(path)) return [];
            var runs = new List<Entry>();
            foreach (string line in File.ReadLines(path).Take(MaxLines))
            {
                try { if (JsonSerializer.Deserialize<Entry>(line) is { } e) runs.Add(e); }
                catch (JsonException) { }
            }
            return runs;
        }
    }

    /// <summary>One kind's held-out evaluation: the model's bits per byte and each compressor's, per chunk of the model's context and on whole files.</summary>
    private sealed record KindResult(string Kind, int Files, long Bytes, double Model, Dictionary<string, double?> Chunked, Dictionary<string, double?> Whole);

    // The model card: what was trained, on what, how long, and how well on each kind's held-out files next to the compressors.
    private static string Card(MblmConfig config, CorpusManifest manifest, long steps, long bytesSeen, IReadOnlyList<RunLog.Entry> runs,
        IReadOnlyList<KindResult> evaluation, int window, bool stoppedByBudget, bool bfloat16)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# MBLM base model").AppendLine();
        string stages = string.Join(", ", config.Blocks.Select((b, i) => $"{b.BlockType} (dim {config.HiddenDims[i]}, {config.NumLayers[i]} layers)"));
        sb.AppendLine(c, $"- parameters: {config.CountParameters():N0}; context {config.MaxContext} bytes; stages: {stages}; weights stored as {(bfloat16 ? "BF16 (loaded exactly as F32)" : "F32")}");
        string stopped = stoppedByBudget ? " (stopped by the time budget)" : "";
        var wall = TimeSpan.FromSeconds(runs.Sum(r => r.WallSeconds));
        string time = $"{(int)wall.TotalHours}:{wall:mm\\:ss}";
        sb.AppendLine(c, $"- training: {steps:N0} optimiser steps, {bytesSeen:N0} bytes seen, {time} wall time in {runs.Count} run(s) of the command (runs.jsonl){stopped}");
        sb.AppendLine(c, $"- machine: {Environment.ProcessorCount} logical CPUs, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
        sb.AppendLine(c, $"- corpus: {manifest.Files.Count:N0} files, {manifest.Files.Sum(f => f.Size):N0} bytes, " +
                      $"{manifest.DuplicatesSkipped:N0} duplicates left out (corpus.json lists every file with its SHA-256)");
        sb.AppendLine().AppendLine("## Runs").AppendLine();
        sb.AppendLine("| started (UTC) | wall | steps | target | ended | command |").AppendLine("|---|---:|---|---:|---|---|");
        foreach (var r in runs)
            sb.AppendLine(c, $"| {r.Started:yyyy-MM-dd HH:mm} | {TimeSpan.FromSeconds(r.WallSeconds):hh\\:mm\\:ss} | {r.FromStep:N0} → {r.ToStep:N0} | {r.Target:N0} | {r.Outcome} | `{r.Command}` |");
        sb.AppendLine().AppendLine("## Corpus").AppendLine();
        sb.AppendLine("| kind | weight | files | bytes | held-out files |").AppendLine("|---|---:|---:|---:|---:|");
        foreach (var (kind, weight) in manifest.Weights)
        {
            var of = manifest.Files.Where(f => f.Kind == kind).ToList();
            sb.AppendLine(c, $"| {kind} | {weight} | {of.Count:N0} | {of.Sum(f => f.Size):N0} | {of.Count(f => f.HeldOut):N0} |");
        }
        string Bpb(double? v) => v is double d ? d.ToString("F3", c) : "-";
        void Table(string title, Func<KindResult, Dictionary<string, double?>> of)
        {
            sb.AppendLine().AppendLine(title).AppendLine();
            sb.AppendLine("| kind | files | bytes | MBLM | " + string.Join(" | ", Compressors.All.Select(x => x.Name)) + " | MBLM / best |");
            sb.AppendLine("|---|---:|---:|---:|" + string.Concat(Compressors.All.Select(_ => "---:|")) + "---:|");
            var rows = evaluation.Select(e => (e.Kind, e.Files, e.Bytes, e.Model, Other: of(e))).ToList();
            long all = rows.Sum(r => r.Bytes);
            if (all > 0)
                rows.Add(("**all (byte-weighted)**", rows.Sum(r => r.Files), all, rows.Sum(r => r.Model * r.Bytes) / all,
                    Compressors.All.ToDictionary(x => x.Name, x => rows.All(r => r.Other.GetValueOrDefault(x.Name) is not null)
                        ? rows.Sum(r => r.Other[x.Name]!.Value * r.Bytes) / all : (double?)null)));
            foreach (var r in rows)
            {
                double? best = r.Other.Values.Where(v => v is not null).Min();
                string others = string.Join(" | ", Compressors.All.Select(x => Bpb(r.Other.GetValueOrDefault(x.Name))));
                string ratio = best is double b && b > 0 ? (r.Model / b).ToString("F2", c) : "-";
                sb.AppendLine(c, $"| {r.Kind} | {r.Files:N0} | {r.Bytes:N0} | {r.Model:F3} | {others} | {ratio} |");
            }
        }
        if (evaluation.Any(e => e.Chunked.Count > 0))
        {
            Table($"## Held-out bits per byte at equal context (compressors on chunks of {window:N0} bytes, the model's context)", e => e.Chunked);
            Table($"## Held-out bits per byte on whole files (compressors see each whole file; the model still reads windows of {window:N0} bytes)", e => e.Whole);
            sb.AppendLine().AppendLine("Compressor sizes leave out each format's fixed container overhead (the size of compressed empty input).");
        }
        else
        {
            sb.AppendLine().AppendLine("| kind | files | bytes | MBLM bits per byte |").AppendLine("|---|---:|---:|---:|");
            foreach (var e in evaluation) sb.AppendLine(c, $"| {e.Kind} | {e.Files:N0} | {e.Bytes:N0} | {e.Model:F3} |");
        }
        sb.AppendLine().AppendLine("Files: `config.json` (the reference's keys) and `model.safetensors` (the reference's state-dict names). " +
                                   "Load with `MblmPretrained.Load(folder)`, start an estimator from it with its `Pretrained` option, or pass `--model` to `mblm generate|eval|train`.");
        return sb.ToString();
    }
}
