namespace Mblm.Config;

/// <summary>An invalid MBLM configuration: <see cref="Key"/> names the offending key, the message states the rule.</summary>
public sealed class ConfigException : Exception
{
    /// <summary>Dotted path of the offending key, e.g. <c>params.block[1].attn_num_heads</c>.</summary>
    public string Key { get; }

    /// <summary>Creates the exception for <paramref name="key"/> breaking <paramref name="rule"/>.</summary>
    public ConfigException(string key, string rule, string? source = null)
        : base((source is null ? "" : source + ": ") + $"config key '{key}' {rule}") => Key = key;

    /// <summary>Throws for <paramref name="key"/> breaking <paramref name="rule"/> unless <paramref name="condition"/> holds (for block configs' <c>Validate</c>).</summary>
    public static void Require(bool condition, string key, string rule)
    {
        if (!condition) throw new ConfigException(key, rule);
    }
}
