using System.Globalization;

namespace Mblm.Cli;

/// <summary>A command-line usage error; the message says which flag and what was expected.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>Minimal <c>--flag value</c> / <c>--switch</c> parser that rejects unknown flags by name.</summary>
public sealed class CliArgs
{
    private readonly Dictionary<string, string?> _values = new();
    private readonly HashSet<string> _used = new();

    /// <summary>Parses <paramref name="args"/>; <paramref name="switches"/> take no value.</summary>
    public CliArgs(IEnumerable<string> args, params string[] switches)
    {
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal)) throw new UsageException($"unexpected argument '{a}' (flags start with --)");
            string name = a[2..];
            string? value = null;
            int eq = name.IndexOf('=');
            if (eq >= 0) (name, value) = (name[..eq], name[(eq + 1)..]);
            else if (!switches.Contains(name))
            {
                if (i + 1 >= list.Count) throw new UsageException($"--{name} needs a value");
                value = list[++i];
            }
            if (!_values.TryAdd(name, value)) throw new UsageException($"--{name} is given twice");
        }
    }

    /// <summary>A required string flag.</summary>
    public string Required(string name) => Optional(name) ?? throw new UsageException($"--{name} is required");

    /// <summary>An optional string flag.</summary>
    public string? Optional(string name)
    {
        _used.Add(name);
        return _values.TryGetValue(name, out var v) ? v : null;
    }

    /// <summary>An optional switch.</summary>
    public bool Switch(string name)
    {
        _used.Add(name);
        return _values.ContainsKey(name);
    }

    /// <summary>An optional integer flag in [<paramref name="min"/>, <paramref name="max"/>]; anything else is a usage error naming the range.</summary>
    public long? Long(string name, long min = long.MinValue, long max = long.MaxValue)
    {
        string? v = Optional(name);
        if (v is null) return null;
        string digits = v.Replace("_", "");
        if (long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long x) && x >= min && x <= max) return x;
        string unsigned = digits.StartsWith('-') || digits.StartsWith('+') ? digits[1..] : digits;
        bool integer = unsigned.Length > 0 && unsigned.All(char.IsAsciiDigit);
        string range = string.Create(CultureInfo.InvariantCulture, $" in [{min}, {max}]");
        throw new UsageException(integer ? $"--{name} must be an integer{range}, got {v}" : $"--{name} must be an integer{range}, got '{v}'");
    }

    /// <summary>An optional integer flag that fits an <see cref="int"/> in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public int? Int(string name, int min = int.MinValue, int max = int.MaxValue) => (int?)Long(name, min, max);

    /// <summary>
    /// An optional finite number flag in the given range (bounds inclusive unless said otherwise); NaN, infinities and
    /// values outside are usage errors naming the range.
    /// </summary>
    public double? Double(string name, double min = double.MinValue, double max = double.MaxValue, bool minExclusive = false, bool maxExclusive = false)
    {
        string? v = Optional(name);
        if (v is null) return null;
        bool parsed = double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x);
        bool inRange = parsed && double.IsFinite(x) && (minExclusive ? x > min : x >= min) && (maxExclusive ? x < max : x <= max);
        if (inRange) return x;
        throw new UsageException($"--{name} must be {DescribeRange(min, max, minExclusive, maxExclusive)}, got '{v}'");
    }

    /// <summary>"a number in (0, 1]" and the like.</summary>
    public static string DescribeRange(double min, double max, bool minExclusive = false, bool maxExclusive = false)
    {
        static string F(double d) => d.ToString("R", CultureInfo.InvariantCulture);
        bool noMin = min == double.MinValue, noMax = max == double.MaxValue;
        if (noMin && noMax) return "a finite number";
        if (noMax) return $"a finite number {(minExclusive ? ">" : ">=")} {F(min)}";
        if (noMin) return $"a finite number {(maxExclusive ? "<" : "<=")} {F(max)}";
        return $"a number in {(minExclusive ? "(" : "[")}{F(min)}, {F(max)}{(maxExclusive ? ")" : "]")}";
    }

    /// <summary>Throws for any flag the command did not ask about.</summary>
    public void RejectUnknown(string command)
    {
        var unknown = _values.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UsageException($"'{command}' does not take --{string.Join(", --", unknown)}");
    }
}
