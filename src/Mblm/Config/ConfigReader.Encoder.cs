using YamlDotNet.RepresentationModel;

namespace Mblm.Config;

// The MBLM encoder's config (MBLMEncoderModelConfig): mask_token_id and an ordinary hierarchy under mblm_config.
public static partial class ConfigReader
{
    private static readonly string[] EncoderKeys = ["mask_token_id", "mblm_config"];

    /// <summary>Loads an encoder config file; see <see cref="ParseEncoderFile"/>. Errors name the file and key.</summary>
    public static MblmEncoderConfigFile LoadEncoderFile(string path)
    {
        try { return ParseEncoderFile(ReadText(path)); }
        catch (ConfigException e) { throw Rewrap(e, path); }
    }

    /// <summary>Loads the encoder config of a file (bare or training layout).</summary>
    public static MblmEncoderConfig LoadEncoder(string path) => LoadEncoderFile(path).Encoder;

    /// <summary>Parses encoder config text (JSON or YAML); see <see cref="ParseEncoderFile"/>.</summary>
    public static MblmEncoderConfig ParseEncoder(string text) => ParseEncoderFile(text).Encoder;

    /// <summary>
    /// Parses an encoder config: either the bare reference <c>MBLMEncoderModelConfig</c> layout
    /// (<c>{mask_token_id, mblm_config: {num_tokens, …, block}}</c>, what <see cref="ConfigWriter.ToJson(MblmEncoderConfig)"/>
    /// writes) or a reference masked-training file (<c>TrainMaskedEntryConfig</c>): <c>params</c> holds
    /// <c>mask_token_id</c>, <c>mblm_config</c> and <c>input_seq_len</c>; of the <c>train</c> section only
    /// <c>masking_proba</c> is read; <c>io</c> and <c>resume</c> are not interpreted.
    /// </summary>
    public static MblmEncoderConfigFile ParseEncoderFile(string text)
    {
        var stream = LoadYaml(text);
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new ConfigException("(document)", "must be a mapping of config keys");
        var top = Keys(root, "");
        if (!top.ContainsKey("params")) return new MblmEncoderConfigFile(ReadEncoder(top, "", allowed: []), null, null);

        foreach (string k in top.Keys)
            if (k is not ("params" or "train" or "io" or "resume"))
                throw new ConfigException(k, "is not a training-file section (expected params, train, io, resume)");
        var parKeys = Keys(AsMapping(top["params"], "params"), "params.");
        long? inputSeqLen = parKeys.TryGetValue("input_seq_len", out var isl) ? Long(isl, "params.input_seq_len") : null;
        if (inputSeqLen is not null && inputSeqLen <= 0) throw new ConfigException("params.input_seq_len", "must be a positive integer");
        var encoder = ReadEncoder(parKeys, "params.", allowed: ["input_seq_len"]);
        double? maskingProba = null;
        if (top.TryGetValue("train", out var t))
        {
            var trainKeys = Keys(AsMapping(t, "train"), "train.");
            maskingProba = Opt<double?>(trainKeys, "masking_proba", "train", (n, p) => Double(n, p), null);
            if (maskingProba is < 0 or > 1) throw new ConfigException("train.masking_proba", "must be in [0, 1]");
        }
        return new MblmEncoderConfigFile(encoder, inputSeqLen, maskingProba);
    }

    private static MblmEncoderConfig ReadEncoder(Dictionary<string, YamlNode> keys, string prefix, string[] allowed)
    {
        foreach (string k in keys.Keys)
            if (!EncoderKeys.Contains(k) && !allowed.Contains(k))
                throw new ConfigException(prefix + k, $"is not an encoder config key (expected one of {string.Join(", ", EncoderKeys)})");
        YamlNode Need(string k) => keys.TryGetValue(k, out var v) && !IsNull(v) ? v : throw new ConfigException(prefix + k, "is required");
        int mask = Int(Need("mask_token_id"), prefix + "mask_token_id");
        string modelPrefix = prefix + "mblm_config.";
        var model = ReadModel(Keys(AsMapping(Need("mblm_config"), prefix + "mblm_config"), modelPrefix), modelPrefix, allowed: []);
        return new MblmEncoderConfig { MaskTokenId = mask, Mblm = model };
    }
}

/// <summary>A parsed encoder config file.</summary>
/// <param name="Encoder">The validated encoder config.</param>
/// <param name="InputSeqLen"><c>params.input_seq_len</c> when the file is a training file.</param>
/// <param name="MaskingProba"><c>train.masking_proba</c> (probability of masking a byte) when present.</param>
public sealed record MblmEncoderConfigFile(MblmEncoderConfig Encoder, long? InputSeqLen, double? MaskingProba);
