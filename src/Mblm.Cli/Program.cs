using Mblm.Config;
using Mblm.Native;

namespace Mblm.Cli;

/// <summary>Entry point of the <c>mblm</c> tool. Results go to standard output (last line JSON where a command promises it); logs to standard error.</summary>
public static class Program
{
    private const string Usage = """
        mblm — Multiscale Byte Language Model (TorchSharp)

        Commands:
          info     --config C                          stages, shapes and parameter count (no weights allocated)
          forward  --config C --weights W --input I.json [--logits-out F.bin] [--device cpu|cuda]
                   prints {"loss": x, "shape": [B, L, V]} as the last line; logits as raw little-endian float32
          train    --config C --data FILE [--val FILE | --val-fraction F] --steps N --batch B --lr X --out DIR
                   [--checkpoint-every K] [--resume] [--grad-accum A] [--clip C] [--shuffle] [--adamw] [--seed S]
                   [--validate-every K] [--window L] [--init W.safetensors] [--device D] [--bf16]
                   weights to DIR/weights.safetensors, checkpoints to DIR/checkpoints/step-NNNNNNNN/; progress on stderr
          generate --config C --weights W (--prompt TEXT | --prompt-file F | --prompt-ids IDS.json) --max-bytes N
                   [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop TEXT] [--stop-ids a,b]
                   [--ids-out NEW.json] [--sliding-window] [--device D]       streams text to stdout (cached decoding)
          eval     --config C --weights W --data FILE [--batch B] [--window L]
                   prints {"bits_per_byte": x, "loss": y, "bytes": n} as the last line
          predict  --model PIPELINE.zip (--text T | --input-file F) [--column NAME]
                   runs an ML.NET pipeline saved with mlContext.Mblm().SaveModel; one JSON line per row (one row per line of F)

        Configs: a model config (JSON or YAML, the reference's keys) or a reference training YAML (model keys under params).
        """;

    /// <summary>Process entry.</summary>
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs a command with the given output writers (used in-process by tests); returns the exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        TorchRuntime.EnsureLoadable();
        if (TorchRuntime.AllocatorTuningRequested) TorchRuntime.TuneAllocator();
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            stdout.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        try
        {
            var rest = args.Skip(1);
            switch (args[0])
            {
                case "info": return InfoCommand.Run(new CliArgs(rest), stdout);
                case "forward": return ForwardCommand.Run(new CliArgs(rest), stdout, stderr);
                case "train": return TrainCommand.Run(new CliArgs(rest, "resume", "shuffle", "adamw", "bf16"), stdout, stderr);
                case "eval": return EvalCommand.Run(new CliArgs(rest), stdout, stderr);
                case "predict": return PredictCommand.Run(new CliArgs(rest), stdout, stderr);
                case "generate": return GenerateCommand.RunAsync(new CliArgs(rest, "sliding-window"), stdout, stderr).GetAwaiter().GetResult();
                default:
                    stderr.WriteLine($"mblm: unknown command '{args[0]}'\n\n{Usage}");
                    return 2;
            }
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"mblm {args[0]}: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is ConfigException or FileNotFoundException or InvalidDataException or ArgumentException
                                    or Weights.WeightsMismatchException or NotSupportedException or System.Text.Json.JsonException or InvalidOperationException)
        {
            stderr.WriteLine($"mblm {args[0]}: {e.Message}");
            return 1;
        }
    }
}
