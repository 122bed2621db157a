using System.Globalization;
using System.Text.Json;
using Mblm.Config;
using Mblm.Model;
using Mblm.Training;
using Mblm.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Cli;

/// <summary>
/// <c>mblm train</c>: trains a model on a byte file with the shared trainer. Flags override a training YAML's <c>train:</c>
/// values; the window length is the config's <c>input_seq_len</c>, else Π seq_lens. Progress goes to standard error.
/// </summary>
internal static class TrainCommand
{
    // TrainerOptions' parameter names → the flags (or config keys) that set them.
    private static readonly Dictionary<string, string> FlagOf = new()
    {
        [nameof(TrainerOptions.Steps)] = "--steps", [nameof(TrainerOptions.BatchSize)] = "--batch", [nameof(TrainerOptions.LearningRate)] = "--lr",
        [nameof(TrainerOptions.GradientAccumulation)] = "--grad-accum", [nameof(TrainerOptions.GradientClipping)] = "--clip",
        [nameof(TrainerOptions.WarmupFraction)] = "train.warmup_steps_perc",
    };

    public static int Run(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        // --model DIR: the config and the initial weights of a model folder (a pretrained base), instead of --config and --init.
        var (configPath, init) = CliPaths.ModelFiles(args, weightsFlag: "init", weightsRequired: false);
        string dataPath = args.Required("data"), outDir = args.Required("out");
        string? valPath = args.Optional("val");
        double? valFraction = args.Double("val-fraction", 0, 1, minExclusive: true, maxExclusive: true);
        long? steps = args.Long("steps", 1), every = args.Long("checkpoint-every", 0), seed = args.Long("seed"), validateEvery = args.Long("validate-every", 0);
        int? batch = args.Int("batch", 1), accumulate = args.Int("grad-accum", 1), window = args.Int("window", 1);
        double? lr = args.Double("lr", 0, minExclusive: true), clip = args.Double("clip", 0, minExclusive: true);
        bool resume = args.Switch("resume"), shuffle = args.Switch("shuffle"), adamw = args.Switch("adamw"), bf16 = args.Switch("bf16");
        var device = DeviceOption.Parse(args.Optional("device"));
        args.RejectUnknown("train");
        if (valPath is not null && valFraction is not null) throw new UsageException("give either --val or --val-fraction, not both");
        CliPaths.InputFile("data", dataPath);
        if (valPath is not null) CliPaths.InputFile("val", valPath);
        CliPaths.OutputDirectory("out", outDir);

        var file = CliModel.LoadFile(configPath);
        var config = file.Model;
        var t = file.Train?.Validate(config); // the reference's rules (positive batch size, accumulation, ...) before any use
        var d = new TrainerOptions { Steps = 1 }; // the library's defaults, for what neither a flag nor the file sets
        int windowLength = window ?? EvalCommand.WindowOf(file);
        int batchSize = batch ?? (int)Math.Min(t?.BatchSize ?? d.BatchSize, int.MaxValue);
        int accum = accumulate ?? (int)Math.Min(t?.GradientAccumulateEvery ?? d.GradientAccumulation, int.MaxValue);
        long totalSteps = steps ?? t?.OptimizerSteps(batchSize, accum, windowLength)
            ?? throw new UsageException("--steps is required (or a training YAML with train.target_elements)");

        var options = d with
        {
            Steps = totalSteps, BatchSize = batchSize, GradientAccumulation = accum,
            LearningRate = lr ?? t?.LearningRate ?? d.LearningRate, GradientClipping = clip ?? t?.GradientClipping ?? d.GradientClipping,
            WarmupFraction = t?.WarmupStepsPerc ?? d.WarmupFraction, Shuffle = shuffle || (t?.ShuffleTrain ?? d.Shuffle), Seed = seed ?? d.Seed,
            AdamW = adamw, Bf16 = bf16, CheckpointEvery = every ?? d.CheckpointEvery, ValidateEvery = validateEvery ?? d.ValidateEvery,
            OutputDirectory = outDir, MaxValidationSamples = t?.MaxEvalSteps is long m ? (m > long.MaxValue / batchSize ? long.MaxValue : m * batchSize) : null,
        };
        try { options.Validate(); }
        catch (ArgumentException e)
        {
            throw new UsageException($"{(e.ParamName is { } n && FlagOf.TryGetValue(n, out var f) ? f : "training options")}: {e.Message}");
        }

        ByteFileDataset trainData;
        ByteFileDataset? validation = null;
        if (valPath is not null) { trainData = new ByteFileDataset(dataPath, windowLength); validation = new ByteFileDataset(valPath, windowLength); }
        else if (valFraction is double fraction) (trainData, validation) = ByteFileDataset.Split(dataPath, windowLength, fraction);
        else trainData = new ByteFileDataset(dataPath, windowLength);
        try
        {
            if (trainData.Count(0) == 0)
                throw new InvalidInputException($"--data '{dataPath}' holds {trainData.Length} training bytes: fewer than one window of {windowLength} bytes");
            if (validation is not null && validation.Count(0) == 0)
                throw new InvalidInputException($"{(valPath is not null ? $"--val '{valPath}'" : $"the --val-fraction {valFraction} tail of '{dataPath}'")} holds {validation.Length} " +
                    $"bytes: fewer than one window of {windowLength} bytes");

            manual_seed(options.Seed);
            var model = CliModel.Load(config, init, device);
            Directory.CreateDirectory(outDir);
            string configCopy = Path.GetFullPath(Path.Combine(outDir, "config" + Path.GetExtension(configPath)));
            if (configCopy != Path.GetFullPath(configPath)) File.Copy(configPath, configCopy, overwrite: true);
            stderr.WriteLine($"mblm train: {config.CountParameters():N0} parameters, {trainData.Count(0):N0} windows of {windowLength} bytes, " +
                             $"batch {batchSize} x {accum}, {totalSteps} steps, lr {options.LearningRate:G3}, device {device.type}" +
                             (validation is not null ? $", validation {validation.Length:N0} bytes" : ""));
            var progress = new ProgressLine(stderr);
            TrainingResult result;
            try
            {
                using (Interrupt.Listen()) result = new Trainer(model, options).Train(trainData, validation, progress, resume, Interrupt.Token);
            }
            catch (OperationCanceledException) when (Interrupt.Token.IsCancellationRequested)
            {
                progress.Finish();
                string? newest = CheckpointStore.Newest(outDir);
                stderr.WriteLine($"mblm train: interrupted{(newest is null ? "" : $" at step {CheckpointStore.StepOf(newest)}; checkpoint '{newest}'")}: " +
                                 "run the same command with --resume to continue");
                return ExitCodes.Interrupted;
            }
            catch (InvalidOperationException e) when (e is not CheckpointMismatchException)
            {
                // The trainer's own stops: non-finite losses in a row, data without a complete sample.
                throw new InvalidInputException(e.Message, e);
            }
            finally { progress.Finish(); }
            if (result.ResumedFromStep is long r) stderr.WriteLine($"resumed from step {r}");
            stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["steps"] = result.Steps, ["final_loss"] = double.IsFinite(result.FinalLoss) ? Math.Round(result.FinalLoss, 6) : null,
                ["validation_bits_per_byte"] = result.ValidationBitsPerByte is double v && double.IsFinite(v) ? Math.Round(v, 6) : null,
                ["weights"] = Path.Combine(outDir, "weights.safetensors"),
            }));
            return 0;
        }
        finally
        {
            trainData.Dispose();
            validation?.Dispose();
        }
    }
}

/// <summary>A live progress line on standard error: step, loss, learning rate, bytes/s, ETA; validations on their own lines.</summary>
internal sealed class ProgressLine(TextWriter err) : IProgress<TrainingProgress>
{
    private bool _open;

    public void Report(TrainingProgress p)
    {
        if (p.Warning is not null)
        {
            Finish();
            err.WriteLine("warning: " + p.Warning);
            return;
        }
        string line = string.Create(CultureInfo.InvariantCulture,
            $"step {p.Step}/{p.TotalSteps} | loss {p.Loss:F4} ({p.Loss * Evaluator.Log2E:F3} bpb) | lr {p.LearningRate:E2} | {p.BytesPerSecond:N0} B/s | ETA {p.Eta:hh\\:mm\\:ss}");
        err.Write("\r" + line.PadRight(100));
        _open = true;
        if (p.ValidationBitsPerByte is double v)
        {
            err.WriteLine(string.Create(CultureInfo.InvariantCulture, $"\nvalidation at step {p.Step}: {v:F4} bits per byte"));
            _open = false;
        }
    }

    public void Finish()
    {
        if (_open) err.WriteLine();
        _open = false;
    }
}
