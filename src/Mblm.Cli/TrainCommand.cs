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
    public static int Run(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string configPath = args.Required("config"), dataPath = args.Required("data"), outDir = args.Required("out");
        string? valPath = args.Optional("val");
        double? valFraction = args.Double("val-fraction");
        long? steps = args.Long("steps"), batch = args.Long("batch"), every = args.Long("checkpoint-every"), seed = args.Long("seed"),
              accumulate = args.Long("grad-accum"), validateEvery = args.Long("validate-every"), window = args.Long("window");
        double? lr = args.Double("lr"), clip = args.Double("clip");
        bool resume = args.Switch("resume"), shuffle = args.Switch("shuffle"), adamw = args.Switch("adamw"), bf16 = args.Switch("bf16");
        string? init = args.Optional("init");
        var device = DeviceOption.Parse(args.Optional("device"));
        args.RejectUnknown("train");

        var file = ConfigReader.LoadFile(configPath);
        var config = file.Model;
        var t = file.Train;
        var d = new TrainerOptions { Steps = 1 }; // the library's defaults, for what neither a flag nor the file sets
        int windowLength = checked((int)(window ?? file.InputSeqLen ?? config.MaxContext));
        int batchSize = checked((int)(batch ?? t?.BatchSize ?? d.BatchSize));
        int accum = checked((int)(accumulate ?? t?.GradientAccumulateEvery ?? d.GradientAccumulation));
        long totalSteps = steps ?? StepsFromTarget(t, batchSize, accum, windowLength)
            ?? throw new UsageException("--steps is required (or a training YAML with train.target_elements)");
        if (valPath is not null && valFraction is not null) throw new UsageException("give either --val or --val-fraction, not both");

        ByteFileDataset trainData, valData;
        ByteFileDataset? validation = null;
        if (valPath is not null) { trainData = new ByteFileDataset(dataPath, windowLength); validation = new ByteFileDataset(valPath, windowLength); }
        else if (valFraction is double f) { (trainData, valData) = ByteFileDataset.Split(dataPath, windowLength, f); validation = valData; }
        else trainData = new ByteFileDataset(dataPath, windowLength);
        if (trainData.Count(0) == 0)
            throw new UsageException($"--data '{dataPath}' holds {trainData.Length} bytes: fewer than one window of {windowLength} bytes");

        var options = d with
        {
            Steps = totalSteps, BatchSize = batchSize, GradientAccumulation = accum,
            LearningRate = lr ?? t?.LearningRate ?? d.LearningRate, GradientClipping = clip ?? t?.GradientClipping ?? d.GradientClipping,
            WarmupFraction = t?.WarmupStepsPerc ?? d.WarmupFraction, Shuffle = shuffle || (t?.ShuffleTrain ?? d.Shuffle), Seed = seed ?? d.Seed,
            AdamW = adamw, Bf16 = bf16, CheckpointEvery = every ?? d.CheckpointEvery, ValidateEvery = validateEvery ?? d.ValidateEvery,
            OutputDirectory = outDir, MaxValidationSamples = t?.MaxEvalSteps is long m ? m * batchSize : null,
        };
        manual_seed(options.Seed);
        var model = CliModel.Load(config, init, device);
        Directory.CreateDirectory(outDir);
        File.Copy(configPath, Path.Combine(outDir, "config" + Path.GetExtension(configPath)), overwrite: true);
        stderr.WriteLine($"mblm train: {config.CountParameters():N0} parameters, {trainData.Count(0):N0} windows of {windowLength} bytes, " +
                         $"batch {batchSize} x {accum}, {totalSteps} steps, lr {options.LearningRate:G3}, device {device.type}" +
                         (validation is not null ? $", validation {validation.Length:N0} bytes" : ""));
        var progress = new ProgressLine(stderr);
        var result = new Trainer(model, options).Train(trainData, validation, progress, resume);
        progress.Finish();
        if (result.ResumedFromStep is long r) stderr.WriteLine($"resumed from step {r}");
        stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["steps"] = result.Steps, ["final_loss"] = double.IsFinite(result.FinalLoss) ? Math.Round(result.FinalLoss, 6) : null,
            ["validation_bits_per_byte"] = result.ValidationBitsPerByte is double v ? Math.Round(v, 6) : null,
            ["weights"] = Path.Combine(outDir, "weights.safetensors"),
        }));
        trainData.Dispose();
        validation?.Dispose();
        return 0;
    }

    // The reference counts training length in elements: bytes ("sequence") or samples ("batch").
    private static long? StepsFromTarget(TrainSection? t, int batch, int accum, int window)
    {
        if (t?.TargetElements is not long target) return null;
        long perBatch = t.TargetElementsStrategy == "batch" ? batch : (long)batch * window;
        long batches = (target + perBatch - 1) / perBatch;
        return Math.Max(1, batches / accum);
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
