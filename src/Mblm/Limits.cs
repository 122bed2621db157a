using System.Globalization;

namespace Mblm;

/// <summary>
/// Bounds on the work a file may ask for, checked before the work is done: a config, weights file, checkpoint or saved
/// pipeline that would need more is refused with an error that says how much it needs. Process-wide settings.
/// </summary>
public static class Limits
{
    private static long _memoryBudget = DefaultMemoryBudget();

    /// <summary>
    /// Memory (bytes) that a model built from a config, or the tensors of a weights file, may take. Default: the memory
    /// this machine (or container) makes available, or the <c>MBLM_MEMORY_BUDGET</c> environment variable (bytes, or with a
    /// K/M/G/T suffix) when set; the CLI's <c>--memory-budget</c> flag sets it too.
    /// </summary>
    public static long MemoryBudgetBytes
    {
        get => Interlocked.Read(ref _memoryBudget);
        set
        {
            if (value <= 0) throw new ArgumentOutOfRangeException(nameof(value), value, "the memory budget must be positive");
            Interlocked.Exchange(ref _memoryBudget, value);
        }
    }

    /// <summary>Deepest nesting accepted in JSON and YAML files (configs, pipeline entries, safetensors headers).</summary>
    public const int MaxNestingDepth = 64;

    /// <summary>Largest config file (bytes) read.</summary>
    public const long MaxConfigBytes = 16L << 20;

    /// <summary>Throws when <paramref name="bytes"/> exceed the budget: "<paramref name="what"/> needs X but the budget is Y".</summary>
    public static void RequireMemory(long bytes, Func<string> what, Func<string, Exception> error)
    {
        long budget = MemoryBudgetBytes;
        if (bytes > budget)
            throw error($"{what()} needs {FormatBytes(bytes)}, more than the memory budget of {FormatBytes(budget)} " +
                        "(Mblm.Limits.MemoryBudgetBytes, MBLM_MEMORY_BUDGET, or --memory-budget)");
    }

    /// <summary>A byte count for people: <c>1.5 GiB</c>.</summary>
    public static string FormatBytes(long bytes)
    {
        string[] units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.Length - 1) { v /= 1024; u++; }
        return u == 0 ? $"{bytes} bytes" : v.ToString("0.#", CultureInfo.InvariantCulture) + " " + units[u];
    }

    /// <summary>Parses <c>123</c>, <c>512M</c>, <c>1G</c>, <c>1.5GiB</c> into bytes; null when the text is not a size.</summary>
    public static long? ParseBytes(string text)
    {
        string t = text.Trim().ToUpperInvariant().Replace("IB", "").Replace("B", "");
        long scale = 1;
        if (t.Length > 0 && "KMGT".Contains(t[^1]))
        {
            scale = 1L << (10 * ("KMGT".IndexOf(t[^1]) + 1));
            t = t[..^1];
        }
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v > 0) || v * scale >= long.MaxValue) return null;
        return (long)(v * scale);
    }

    private static long DefaultMemoryBudget()
    {
        string? env = Environment.GetEnvironmentVariable("MBLM_MEMORY_BUDGET");
        if (env is not null && ParseBytes(env) is long b) return b;
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return available > 0 ? available : long.MaxValue;
    }
}
