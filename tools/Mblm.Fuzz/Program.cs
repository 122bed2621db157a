using System.Globalization;
using Mblm.Fuzz;
using Mblm.Native;
using Mblm.Tooling;

// Usage: dotnet run -c Release --project tools/Mblm.Fuzz -- [options]
//   [--seed 1] [--per-format 1000] [--timeout-s 30] [--budget 1G] [--formats safetensors,pth,config-json,config-yaml,pipeline,checkpoint]
//   [--cli] [--cli-path PATH] [--from I --count K] [--jobs N] [--batch 100] [--kill-rss 8G] [--seeds DIR] [--work DIR] [--keep] [--verbose]
// Seeded mutations of every loader's input, run in child processes (FuzzCommand.cs); exit 1 on any crash, hang, other
// exception or over-budget attempt. One attempt: --formats F --seed S --from I --count 1 (prints details). docs/fuzzing.md.
TorchRuntime.EnsureLoadable();
TorchRuntime.TuneAllocator(TorchRuntime.RequestedAllocatorTuning);
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
if (args.FirstOrDefault() == "fuzz-worker") return FuzzCommand.Worker(Options.Parse(args.Skip(1).ToArray()));
return FuzzCommand.Run(Options.Parse(args));
