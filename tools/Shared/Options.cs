using System.Globalization;

namespace Mblm.Tooling;

/// <summary>The command-line options of the repository's console programs (benchmarks, fuzzer): <c>--name value</c> pairs.</summary>
internal sealed class Options(Dictionary<string, string> values)
{
    // `--name value` pairs; a flag followed by another flag (or by nothing) is a switch, `--cli`.
    public static Options Parse(string[] args)
    {
        var d = new Dictionary<string, string>();
        for (int i = 0; i < args.Length; i++)
        {
            string key = args[i].TrimStart('-');
            d[key] = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
        }
        return new Options(d);
    }
    public bool Has(string k) => values.ContainsKey(k);
    public string Str(string k, string fallback) => values.TryGetValue(k, out var v) ? v : fallback;
    public int Int(string k, int fallback) => values.TryGetValue(k, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
    public long Long(string k, long fallback) => values.TryGetValue(k, out var v) ? long.Parse(v.Replace("_", ""), CultureInfo.InvariantCulture) : fallback;
    public long[] Longs(string k, string fallback) => Str(k, fallback).Split(',').Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
}
