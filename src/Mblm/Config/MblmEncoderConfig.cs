namespace Mblm.Config;

/// <summary>
/// Configuration of the MBLM encoder (reference <c>MBLMEncoderModelConfig</c>): the id that marks masked bytes
/// (<c>mask_token_id</c>) and the hierarchy (<c>mblm_config</c>, an ordinary <see cref="MblmConfig"/>, typically with
/// <see cref="TransformerEncoderBlockConfig"/> stages). Read with <see cref="ConfigReader.ParseEncoder"/>, write with
/// <see cref="ConfigWriter.ToJson(MblmEncoderConfig)"/>. Immutable.
/// </summary>
public sealed record MblmEncoderConfig
{
    /// <summary>
    /// The mask id (<c>mask_token_id</c>): masked input bytes carry it, and it is the ignore index of the masked-byte loss.
    /// Like the reference, any integer is accepted; to be fed to the model it must lie in [0, num_tokens) (e.g.
    /// num_tokens 258, pad 256, mask 257) and should differ from <c>pad_token_id</c> (the pad row embeds to zero).
    /// </summary>
    public required int MaskTokenId { get; init; }

    /// <summary>The hierarchy (<c>mblm_config</c>).</summary>
    public required MblmConfig Mblm { get; init; }

    /// <summary>Checks the hierarchy's rules; throws <see cref="ConfigException"/> (keys prefixed <c>mblm_config.</c>).</summary>
    public MblmEncoderConfig Validate()
    {
        try { Mblm.Validate(); }
        catch (ConfigException e) { throw new ConfigException("mblm_config." + e.Key, RuleOf(e)); }
        return this;
    }

    internal static string RuleOf(ConfigException e)
    {
        string marker = $"config key '{e.Key}' ";
        int at = e.Message.IndexOf(marker, StringComparison.Ordinal);
        return at < 0 ? e.Message : e.Message.Substring(at + marker.Length);
    }
}
