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

    /// <summary>An optional integer flag.</summary>
    public long? Long(string name)
    {
        string? v = Optional(name);
        if (v is null) return null;
        return long.TryParse(v.Replace("_", ""), NumberStyles.Integer, CultureInfo.InvariantCulture, out long x)
            ? x : throw new UsageException($"--{name} must be an integer, got '{v}'");
    }

    /// <summary>An optional number flag.</summary>
    public double? Double(string name)
    {
        string? v = Optional(name);
        if (v is null) return null;
        return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x)
            ? x : throw new UsageException($"--{name} must be a number, got '{v}'");
    }

    /// <summary>Throws for any flag the command did not ask about.</summary>
    public void RejectUnknown(string command)
    {
        var unknown = _values.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UsageException($"'{command}' does not take --{string.Join(", --", unknown)}");
    }
}
