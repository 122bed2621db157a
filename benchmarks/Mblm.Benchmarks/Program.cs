using System.Diagnostics;
using System.Globalization;
using Mblm.Benchmarks;
using Mblm.Native;

// Usage: dotnet run -c Release --project benchmarks/Mblm.Benchmarks -- <benchmark> [options]
//   train-step [--config examples/configs/p1-2d-tt.yaml] [--batch 4] [--length 2048] [--steps 15] [--warmup 2]
//   profile    [--config examples/configs/p1-2d-tt.yaml] [--batch 4] [--length 2048] [--steps 9] [--warmup 2]
//              forward/backward time per model region of one training step (StepProfile), GEMM rates, fixed per-step cost
//   compare    [--configs P1,P3,P2] [--gen 1024,8192] [--reps 3] [--steps 15] [--warmup 2] [--harness DIR] [--max-wait-s 300]
//              ours and the Python reference (../shared/reference-harness) side by side, alternating fresh processes
//   mamba      [--lengths 1024,4096,16384] [--reps 3]
//   mamba-profile [--length 4096]                      (forward+backward time of each Mamba2 mixer part)
//   generation [--contexts 1024,8192,32768,65536] [--bytes 16] [--recompute-max 8192] [--text FILE]
//   mlnet      [--steps 60] [--reps 2] [--rows 256] [--kib 256] [--data FILE] [--scoring-only]   (ML.NET Fit overhead; Transform rows/s by ScoringBatchSize)
//   long-context [--context 1048576] [--stages 1|2|3] [--chunks 4,8|none] [--breakdown]   (memory per phase: MemoryPhases.cs)
//   contention [--steps 6] [--warmup 2] [--reps 5] [--competitors N] [--workloads train,score] [--extra "GOMP_SPINCOUNT=1000;OMP_WAIT_POLICY=ACTIVE"]
//              (P1 training step and batched scoring, quiet vs with N busy-loop processes, per OpenMP setting, fresh processes)
//   transfer   [--seeds 3] [--pretrain-steps 600] [--scenes 400] [--epochs 4] [--shared ../shared] [--keep-lm LM.zip]
//              text-pretrained LM → VQA answer classifier (and text classifier), with and without transfer, over seeds
//   soak       [--predictions 10000] [--warmup 500]   RSS and live tensors over many predictions (SoakBenchmark.cs)
//   classify   [--rows 600] [--reps 3] [--batches 16,64,256]   pooled-head text classifier: scorer, Transform and PredictionEngine speed
TorchRuntime.EnsureLoadable();
var tuning = TorchRuntime.RequestedAllocatorTuning;
bool tuned = TorchRuntime.TuneAllocator(tuning);
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var opts = Options.Parse(args.Skip(1).ToArray());
Console.WriteLine($"# {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, torch threads {TorchSharp.torch.get_num_threads()}, " +
                  $"load avg {File.ReadAllText("/proc/loadavg").Split(' ')[0]}, " +
                  $"allocator tuning {(tuned ? tuning.ToString() : "none")}, OpenMP defaults applied: " +
                      $"{(TorchRuntime.AppliedThreadingDefaults.Count == 0 ? "none" : string.Join(" ", TorchRuntime.AppliedThreadingDefaults))}");
switch (args.FirstOrDefault())
{
    case "train-step": TrainStepBenchmark.Run(opts); break;
    case "compare": return CompareBenchmark.Run(opts);
    case "profile": ProfileBenchmark.Run(opts); break;
    case "transfer": TransferBenchmark.Run(opts); break;
    case "mamba": MambaBenchmark.Run(opts); break;
    case "mamba-profile": MambaProfile.Run(opts); break;
    case "long-context": LongContextBenchmark.Run(opts); break;
    case "generation": GenerationBenchmark.Run(opts); break;
    case "mlnet": MLNetBenchmark.Run(opts); break;
    case "classify": ClassifyBenchmark.Run(opts); break;
    case "contention": ContentionBenchmark.Run(opts); break;
    case "soak": return SoakBenchmark.Run(opts);
    default:
        Console.Error.WriteLine("benchmarks: train-step | profile | compare | transfer | mamba | mamba-profile | generation | mlnet | long-context | contention | soak (see Program.cs for options)");
        return 2;
}
return 0;

namespace Mblm.Benchmarks
{
    internal static class Stats
    {
        public static double Median(IEnumerable<double> xs)
        {
            var s = xs.OrderBy(x => x).ToArray();
            return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
        }

        /// <summary>The 1-minute load average.</summary>
        public static double LoadAverage() => double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);

        public static double PeakRssMiB()
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return double.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
            return double.NaN;
        }

        public static double TimeMs(Action a)
        {
            var sw = Stopwatch.StartNew();
            a();
            return sw.Elapsed.TotalMilliseconds;
        }
    }
}
