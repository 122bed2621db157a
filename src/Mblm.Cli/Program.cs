using Mblm.Config;
using Mblm.Native;

namespace Mblm.Cli;

/// <summary>Entry point of the <c>mblm</c> tool. Results go to standard output (last line JSON where a command promises it); logs to standard error.</summary>
public static class Program
{
    private const string Usage = """
        mblm — Multiscale Byte Language Model (TorchSharp)

        Commands:
          info     [--config C]                        the libtorch in use (path, version, source); with C: stages, shapes,
                                                       parameter count (no weights allocated)
          forward  --config C --weights W --input I.json [--logits-out F.bin] [--device cpu|cuda]
                   prints {"loss": x, "shape": [B, L, V]} as the last line; logits as raw little-endian float32
          train    (--config C [--init W] | --model DIR) --data FILE [--val FILE | --val-fraction F] --steps N --batch B --lr X --out DIR
                   [--checkpoint-every K] [--resume] [--grad-accum A] [--clip C] [--shuffle] [--adamw] [--seed S]
                   [--validate-every K] [--window L] [--device D] [--bf16]   (--model: start from a model folder's
                   config and weights, e.g. the pretrained base: --model mblm-base)
                   weights to DIR/weights.safetensors, checkpoints to DIR/checkpoints/step-NNNNNNNN/; progress on stderr
          pretrain --config C --steps N --out DIR [--corpus corpus.json | --max-bytes-per-kind SIZE --held-out-percent P]
                   [--minutes M] [--batch B] [--lr X] [--warmup-steps W] [--checkpoint-every K] [--seed S] [--eval-bytes-per-kind N] [--resume]
                   [--device D] [--store-bf16] [--no-compressors]   gathers a corpus of installed files by kind (DIR/corpus.json:
                   path, size, SHA-256, kind, split), trains (warm-up–stable–decay: --resume with more --steps extends a run;
                   --minutes caps the wall time), measures held-out bits per byte per kind next to gzip -9, bzip2 -9, xz -9e and
                   zstd -19 (at the model's context and on whole files); writes DIR/model/{config.json, model.safetensors, README.md}
          generate (--config C --weights W | --model DIR) (--prompt TEXT | --prompt-file F | --prompt-ids IDS.json) --max-bytes N
                   [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop TEXT] [--stop-ids a,b]
                   [--ids-out NEW.json] [--sliding-window] [--device D]       streams text to stdout (cached decoding)
          eval     (--config C --weights W | --model DIR) --data FILE [--batch B] [--window L]
                   prints {"bits_per_byte": x, "loss": y, "bytes": n} as the last line
          export   --config C --weights W --out DIR [--format reference|safetensors]
                   [--input-seq-len N] [--batch-size B] [--learning-rate X] [--target-elements N] [--dataset-dir D]
                   [--dataset-id ID] [--output-dir D] [--name NAME] [--resume]  (the flags set values of the reference YAML;
                   --resume adds a resume section pointing at DIR/model.pth, so the reference's trainer starts from it)
                   reference (default): DIR/config.yaml, the reference's training YAML (params incl. input_seq_len, train,
                   io: values from the flags, else from C when it is a training YAML, else defaults: input_seq_len = the
                   max context, batch 8, lr 0.001, target_elements 100000000, dataset pg19 in ./data, output ./output)
                   and DIR/model.pth, {"MODEL": state_dict, "LOSS": None} for torch.load / the reference's trainer;
                   safetensors: DIR/weights.safetensors + DIR/config.json. Prints {"format": f, "files": [...]}
          predict  --model PIPELINE.zip (--text T | --input-file F) [--column NAME]
                   runs an ML.NET pipeline saved with mlContext.Mblm().SaveModel; one JSON line per row (one row per line of F)

        Model folders (--model): config.json + model.safetensors (+ README.md), as mblm pretrain writes them; a bare name
        (e.g. mblm-base) is looked up in MBLM_MODELS, models/ beside the tool, and models/ of the current folder and above.
        Configs: a model config (JSON or YAML, the reference's keys) or a reference training YAML (model keys under params).
        Weights (--weights, --init): safetensors, or a PyTorch .pth (torch.save zip: the reference trainer's checkpoint
        {"MODEL": state_dict, "LOSS": loss} or a bare state dict), recognised by content; pickles may name only tensor
        rebuild functions, typed storages and OrderedDict.

        Every command takes --debug (print the full exception on failure), --help, and --memory-budget SIZE (e.g. 8G: a
        config, weights file or pipeline that needs more memory is refused before anything is allocated; default: the
        machine's memory, or MBLM_MEMORY_BUDGET), and --threads N (libtorch threads; default one per core).
        Exit codes: 0 success; 1 usage error (unknown command or flag, bad or missing flag value); 2 invalid files or data
        (config, weights, pipeline, checkpoint or data file missing, unreadable, unwritable, damaged or not fitting);
        3 internal error (a bug: rerun with --debug and report the trace); 130 interrupted (Ctrl+C or SIGTERM: train
        stops after the current step and writes a checkpoint that --resume continues; generate keeps what it generated).
        Errors are one line on stderr.
        """;

    /// <summary>Process entry.</summary>
    public static int Main(string[] args)
    {
        Interrupt.Install();
        return Run(args, Console.Out, Console.Error);
    }

    /// <summary>
    /// Runs a command with the given output writers (used in-process by tests); returns the exit code (see
    /// <see cref="ExitCodes"/>). Never throws: failures are one line on <paramref name="stderr"/> (and the full exception
    /// with <c>--debug</c>).
    /// </summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        bool debug = args.Contains("--debug");
        args = args.Where(a => a != "--debug").ToArray();
        string command = args.Length > 0 ? args[0] : "";
        long budget = Limits.MemoryBudgetBytes; // --memory-budget and --threads hold for this run only (Run is also called in-process)
        int? threadsBefore = null;
        try
        {
            if (args.Length == 0)
            {
                stderr.WriteLine(Usage);
                return ExitCodes.Usage;
            }
            if (args.Any(a => a is "-h" or "--help") || args[0] == "help")
            {
                stdout.WriteLine(Usage);
                return ExitCodes.Ok;
            }
            var global = new CliArgs(TakeFlags(ref args, "memory-budget", "threads"));
            if (global.Optional("memory-budget") is { } size)
                Limits.MemoryBudgetBytes = Limits.ParseBytes(size)
                    ?? throw new UsageException($"--memory-budget must be a size such as 512M, 8G or a byte count, got '{size}'");
            int? threads = global.Int("threads", 1, 1024);
            TorchRuntime.EnsureLoadable();
            // A libtorch folder asked for but not used is an error before any work, not a silent mix of versions.
            if (LibTorchLocation.RequestedDirectory is not null && command != "info" && LibTorchLocation.Describe().Problem is { } problem)
                throw new InvalidInputException("libtorch: " + problem);
            AllocatorTuning tuning;
            try { tuning = TorchRuntime.RequestedAllocatorTuning; }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            TorchRuntime.TuneAllocator(tuning);
            if (TorchRuntime.ThreadingProblem is { } threading) throw new UsageException(threading);
            if (threads is int n)
            {
                threadsBefore = TorchSharp.torch.get_num_threads();
                TorchSharp.torch.set_num_threads(n);
            }
            var rest = args.Skip(1);
            switch (command)
            {
                case "info": return InfoCommand.Run(new CliArgs(rest), stdout);
                case "forward": return ForwardCommand.Run(new CliArgs(rest), stdout, stderr);
                case "train": return TrainCommand.Run(new CliArgs(rest, "resume", "shuffle", "adamw", "bf16"), stdout, stderr);
                case "pretrain": return PretrainCommand.Run(new CliArgs(rest, "resume", "store-bf16", "no-compressors"), stdout, stderr);
                case "eval": return EvalCommand.Run(new CliArgs(rest), stdout, stderr);
                case "predict": return PredictCommand.Run(new CliArgs(rest), stdout, stderr);
                case "export": return ExportCommand.Run(new CliArgs(rest, "resume"), stdout, stderr);
                case "generate": return GenerateCommand.RunAsync(new CliArgs(rest, "sliding-window"), stdout, stderr).GetAwaiter().GetResult();
                default:
                    stderr.WriteLine($"mblm: unknown command '{command}' (commands: info, forward, train, pretrain, eval, generate, predict, export; mblm --help for usage)");
                    return ExitCodes.Usage;
            }
        }
        catch (TypeInitializationException e) when (e.TypeName == "TorchSharp.torch")
        {
            // libtorch did not load: name the cause (TorchSharp's own message carries a long load trace) and the remedy.
            string cause = Errors.OneLine((e.InnerException?.Message ?? e.Message).Split('\n')[0]);
            string message = LibTorchLocation.LoadError is { } why
                ? $"libtorch could not be loaded: {why}"
                : $"libtorch could not be loaded from the app folder, {LibTorchLocation.DirectoryVariable} or LD_LIBRARY_PATH: {cause}";
            return Report(new InvalidInputException(message, e), command, debug, stdout, stderr);
        }
        catch (Exception e)
        {
            return Report(e, command, debug, stdout, stderr);
        }
        finally
        {
            Limits.MemoryBudgetBytes = budget;
            if (threadsBefore is int t) TorchSharp.torch.set_num_threads(t);
        }
    }

    // Removes the flags every command takes (`--name value` or `--name=value`) from args and returns them.
    private static List<string> TakeFlags(ref string[] args, params string[] names)
    {
        var taken = new List<string>();
        var rest = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (names.Any(n => a == "--" + n))
            {
                taken.Add(a);
                if (i + 1 < args.Length) taken.Add(args[++i]);
            }
            else if (names.Any(n => a.StartsWith("--" + n + "=", StringComparison.Ordinal))) taken.Add(a);
            else rest.Add(a);
        }
        args = [.. rest];
        return taken;
    }

    /// <summary>Writes the one-line message of a failure (and with <paramref name="debug"/> the full exception); returns its exit code.</summary>
    internal static int Report(Exception e, string command, bool debug, TextWriter stdout, TextWriter stderr)
    {
        int code = Errors.ExitCodeOf(e);
        string prefix = command.Length > 0 ? $"mblm {command}: " : "mblm: ";
        string message = Errors.OneLine(e.Message);
        try
        {
            stdout.Flush();
            stderr.WriteLine(code == ExitCodes.Internal
                ? $"{prefix}internal error: {e.GetType().FullName}: {message}{(debug ? "" : " (rerun with --debug for the full trace)")}"
                : prefix + message);
            if (debug) stderr.WriteLine(e.ToString());
        }
        catch (IOException)
        {
            // stderr itself is gone (a closed pipe): nothing left to tell.
        }
        return code;
    }
}
