using System.Globalization;
using Mblm.Model;
using static TorchSharp.torch;

namespace Mblm.Benchmarks;

/// <summary>
/// Phase-by-phase memory of one training step (long-context <c>--breakdown</c>): at each probe of the model
/// (<see cref="MemoryProbe"/>) and of the benchmark, prints the current RSS, the peak RSS since the previous probe (the
/// kernel's high-water mark, reset through <c>/proc/self/clear_refs</c>) and the size of the tensor just produced.
/// Resetting the high-water mark hides the process-wide peak, so the benchmark reads it from its own running maximum.
/// </summary>
internal sealed class MemoryPhases : IDisposable
{
    private readonly long _bytes;
    private double _peak;   // process-wide peak over all phases (MiB)
    private int _backwardCalls;

    public MemoryPhases(long bytes)
    {
        _bytes = bytes;
        Console.WriteLine("| phase | tensor | tensor MiB | B/byte | RSS MiB | phase peak MiB | RSS after malloc_trim MiB |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
        MemoryProbe.Hook = (label, t) =>
        {
            if (label == "checkpoint backward" && ++_backwardCalls % 4 != 1) { ResetPeak(); return; } // every 4th chunk
            At(label, t);
        };
    }

    /// <summary>The highest RSS seen over all phases so far (MiB).</summary>
    public double Peak => Math.Max(_peak, ReadMiB("VmHWM:"));

    public void At(string label, Tensor? t = null)
    {
        double rss = ReadMiB("VmRSS:"), hwm = ReadMiB("VmHWM:");
        _peak = Math.Max(_peak, hwm);
        string shape = t is null ? "" : $"{t.dtype} [{string.Join(", ", t.shape)}]";
        double mib = t is null ? 0 : t.NumberOfElements * t.ElementSize / 1048576.0;
        string perByte = t is null ? "" : (mib * 1048576 / _bytes).ToString("F1", CultureInfo.InvariantCulture);
        // What the allocator holds free without returning it (slack): RSS minus RSS after glibc's malloc_trim.
        malloc_trim(0);
        double trimmed = ReadMiB("VmRSS:");
        Console.WriteLine($"| {label} | {shape} | {(t is null ? "" : mib.ToString("F0", CultureInfo.InvariantCulture))} | {perByte} | {rss:F0} | {hwm:F0} | {trimmed:F0} |");
        ResetPeak();
    }

    private void ResetPeak()
    {
        _peak = Math.Max(_peak, ReadMiB("VmHWM:"));
        File.WriteAllText("/proc/self/clear_refs", "5");
    }

    private static double ReadMiB(string key)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return double.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
        return double.NaN;
    }

    public void Dispose() => MemoryProbe.Hook = null;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int malloc_trim(nuint pad);
}
