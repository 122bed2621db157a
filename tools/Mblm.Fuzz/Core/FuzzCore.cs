using System.Globalization;
using System.Text;

// Shared by the fuzzer (tools/Mblm.Fuzz) and the CI slice (tests/Mblm.Tests/Hardening/FuzzSliceTests.cs),
// which links every file of this folder (Core/). Nothing here knows about child processes.
namespace Mblm.Fuzz.Core;

/// <summary>
/// SplitMix64: a small deterministic generator, so that (seed, format, index) names one mutation on every machine and
/// .NET version (System.Random's seeded sequence is not a documented contract).
/// </summary>
internal sealed class FuzzRng(ulong state)
{
    private ulong _state = state;

    /// <summary>The generator of attempt <paramref name="index"/> of <paramref name="format"/> under <paramref name="seed"/>.</summary>
    public static FuzzRng For(long seed, string format, long index)
    {
        ulong h = 14695981039346656037UL; // FNV-1a of the format name
        foreach (byte b in Encoding.UTF8.GetBytes(format)) h = (h ^ b) * 1099511628211UL;
        return new FuzzRng(Mix(Mix((ulong)seed) ^ h) ^ Mix((ulong)index + 0x632BE59BD9B4E019UL));
    }

    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong Next() => Mix(_state += 0x9E3779B97F4A7C15UL);

    /// <summary>Uniform in [0, n).</summary>
    public int Int(int n) => n <= 0 ? throw new ArgumentOutOfRangeException(nameof(n)) : (int)(Next() % (ulong)n);

    /// <summary>Uniform in [lo, hi] (inclusive).</summary>
    public long Long(long lo, long hi) => lo + (long)(Next() % (ulong)(hi - lo + 1));

    public bool Chance(double p) => (Next() >> 11) * (1.0 / (1UL << 53)) < p;

    public T Pick<T>(IReadOnlyList<T> items) => items[Int(items.Count)];

    /// <summary>An index with probability proportional to its weight.</summary>
    public int Weighted(params int[] weights)
    {
        int r = Int(weights.Sum());
        for (int i = 0; i < weights.Length; i++)
        {
            if (r < weights[i]) return i;
            r -= weights[i];
        }
        return weights.Length - 1;
    }
}

/// <summary>What was done to a seed file, step by step: printed with failures so that they can be understood.</summary>
internal sealed class MutationLog
{
    private readonly List<string> _steps = [];

    private static readonly bool Echo = Environment.GetEnvironmentVariable("MBLM_FUZZ_TRACE") == "1";

    public void Add(string step)
    {
        _steps.Add(step.Length > 300 ? step[..300] + "…" : step);
        if (Echo) Console.Error.WriteLine("mutation: " + _steps[^1]); // MBLM_FUZZ_TRACE=1: each step as it is taken
    }

    public override string ToString() => _steps.Count == 0 ? "(none)" : string.Join("; ", _steps);
}

/// <summary>Values that break parsers: boundaries of integer types, floats beyond range, wrong types.</summary>
internal static class Interesting
{
    public static readonly long[] Integers =
    [
        0, 1, -1, 2, 7, 127, 128, 255, 256, 257, 32767, 32768, 65535, 65536, int.MaxValue, (long)int.MaxValue + 1, int.MinValue,
        (long)int.MinValue - 1, uint.MaxValue, (long)uint.MaxValue + 1, 1L << 40, (1L << 53) + 1, 1L << 62, long.MaxValue, long.MinValue,
        100_000_000, 100_000_001, 1_000_000_007,
    ];

    /// <summary>JSON number texts, some of them out of every type's range or not JSON at all.</summary>
    public static readonly string[] NumberTexts =
    [
        "0", "-0", "1", "-1", "3", "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967296", "9007199254740993",
        "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616", "1e308", "-1e308", "1e309",
        "-1e309", "1e-400", "4.9e-324", "1.5", "0.1", "2.0", "1e9", "1E+18", "100000000000000000000000000000000000000", "NaN",
        "Infinity", "-Infinity", "0x10", "1_000", "01", "+1", ".5", "5.", "1e", "--1",
    ];

    /// <summary>JSON values of the wrong type or shape.</summary>
    public static string OtherValue(FuzzRng rng) => rng.Int(16) switch
    {
        0 => "null",
        1 => "true",
        2 => "false",
        3 => "\"\"",
        4 => "\"257\"",
        5 => "\"fixed\"",
        6 => "[]",
        7 => "{}",
        8 => "[null]",
        9 => "\"" + new string('a', rng.Pick(new[] { 1000, 100_000, 2_000_000 })) + "\"",
        10 => "\"\\u0000\\ud800\"",
        11 => "[" + string.Join(",", Enumerable.Repeat("1", rng.Pick(new[] { 17, 1000, 200_000 }))) + "]",
        12 => Nested(rng.Pick(new[] { 63, 64, 65, 1000, 100_000 }), rng.Chance(0.5)),
        13 => "{\"a\": 1, \"a\": 2}",
        14 => "[1, \"two\", null, {}, []]",
        _ => "-" + rng.Pick(NumberTexts).TrimStart('-', '+'),
    };

    /// <summary><c>[[[…]]]</c> or <c>{"a":{"a":…}}</c> nested <paramref name="depth"/> deep.</summary>
    public static string Nested(int depth, bool objects)
    {
        var sb = new StringBuilder(depth * 8);
        for (int i = 0; i < depth; i++) sb.Append(objects ? "{\"a\":" : "[");
        sb.Append('1');
        for (int i = 0; i < depth; i++) sb.Append(objects ? '}' : ']');
        return sb.ToString();
    }

    /// <summary>A JSON number, or occasionally something that only looks like one.</summary>
    public static string Number(FuzzRng rng) => rng.Chance(0.6)
        ? rng.Pick(Integers).ToString(CultureInfo.InvariantCulture)
        : rng.Pick(NumberTexts);
}

/// <summary>Mutations that know nothing of the format: bit flips, truncation, splicing, overwritten integers.</summary>
internal static class ByteMutator
{
    public static byte[] Mutate(byte[] data, FuzzRng rng, MutationLog log, string what, byte[]? donor = null)
    {
        switch (rng.Int(donor is null ? 8 : 9))
        {
            case 0: return BitFlips(data, rng, log, what);
            case 1:
            {
                var d = (byte[])data.Clone();
                int n = 1 + rng.Int(8);
                for (int i = 0; i < n && d.Length > 0; i++) d[rng.Int(d.Length)] = rng.Pick(new byte[] { 0x00, 0xFF, 0x7F, 0x80, 0x20, 0x22, 0x5B, 0x7B });
                log.Add($"{what}: {n} bytes set to boundary values");
                return d;
            }
            case 2: return InterestingInteger(data, rng, log, what);
            case 3:
            {
                int at = data.Length == 0 ? 0 : rng.Chance(0.3) ? Math.Max(0, data.Length - 1 - rng.Int(16)) : rng.Int(data.Length);
                log.Add($"{what}: truncated to {at} of {data.Length}");
                return data[..at];
            }
            case 4:
            {
                int n = rng.Pick(new[] { 1, 7, 64, 4096, 1 << 20 });
                var extra = new byte[n];
                if (rng.Chance(0.5)) for (int i = 0; i < n; i++) extra[i] = (byte)rng.Next();
                log.Add($"{what}: {n} {(extra.Any(b => b != 0) ? "random" : "zero")} bytes appended");
                return [.. data, .. extra];
            }
            case 5:
            {
                if (data.Length < 2) return BitFlips(data, rng, log, what);
                int start = rng.Int(data.Length), len = 1 + rng.Int(Math.Min(data.Length - start, rng.Chance(0.5) ? 16 : 4096));
                log.Add($"{what}: deleted [{start}, {start + len})");
                return [.. data[..start], .. data[(start + len)..]];
            }
            case 6:
            {
                if (data.Length < 2) return BitFlips(data, rng, log, what);
                int start = rng.Int(data.Length), len = 1 + rng.Int(Math.Min(data.Length - start, 4096)), to = rng.Int(data.Length);
                log.Add($"{what}: [{start}, {start + len}) copied in at {to}");
                return [.. data[..to], .. data[start..(start + len)], .. data[to..]];
            }
            case 7:
            {
                var d = (byte[])data.Clone();
                if (d.Length < 2) return BitFlips(data, rng, log, what);
                int a = rng.Int(d.Length), b = rng.Int(d.Length), len = 1 + rng.Int(Math.Min(64, d.Length - Math.Max(a, b)));
                var tmp = d[a..(a + len)];
                Array.Copy(d, b, d, a, len);
                tmp.CopyTo(d, b);
                log.Add($"{what}: swapped {len} bytes at {a} and {b}");
                return d;
            }
            default:
            {
                int cut = rng.Int(data.Length + 1), from = rng.Int(donor!.Length + 1);
                log.Add($"{what}: spliced [0, {cut}) with another seed's bytes from {from}");
                return [.. data[..cut], .. donor[from..]];
            }
        }
    }

    public static byte[] BitFlips(byte[] data, FuzzRng rng, MutationLog log, string what)
    {
        var d = (byte[])data.Clone();
        if (d.Length == 0) { log.Add("bytes: empty (nothing to flip)"); return d; }
        int n = rng.Pick(new[] { 1, 1, 2, 4, 16 });
        var where = new List<int>();
        for (int i = 0; i < n; i++)
        {
            int at = rng.Int(d.Length);
            d[at] ^= (byte)(1 << rng.Int(8));
            where.Add(at);
        }
        log.Add($"{what}: bit flips at {string.Join(",", where)}");
        return d;
    }

    public static byte[] InterestingInteger(byte[] data, FuzzRng rng, MutationLog log, string what)
    {
        var d = (byte[])data.Clone();
        int width = rng.Pick(new[] { 1, 2, 4, 8 });
        if (d.Length < width) return BitFlips(data, rng, log, what);
        int at = rng.Int(d.Length - width + 1);
        if (rng.Chance(0.5)) at -= at % width;
        long v = rng.Pick(Interesting.Integers);
        for (int i = 0; i < width; i++) d[at + i] = (byte)(v >> (8 * i));
        log.Add($"{what}: {width}-byte little-endian {v} written at {at}");
        return d;
    }
}

/// <summary>Process memory: RSS and its peak (VmHWM) from /proc, resetting the peak, and giving freed memory back.</summary>
internal static class ProcessMemory
{
    /// <summary>A field of /proc/[pid]/status in MiB (VmRSS, VmHWM), or 0 when it cannot be read.</summary>
    public static double MiB(string field, int pid = 0)
    {
        try
        {
            foreach (var line in File.ReadLines(pid == 0 ? "/proc/self/status" : $"/proc/{pid}/status"))
                if (line.StartsWith(field + ":", StringComparison.Ordinal))
                    return double.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }

    /// <summary>Resets VmHWM to the current RSS (Linux 4.0+), so that the peak covers only what follows.</summary>
    public static void ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>A full, compacting collection that decommits free memory, then glibc's malloc_trim: RSS back near what is live.</summary>
    public static void Release()
    {
        System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        try { MallocTrim(0); }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
    }
}
