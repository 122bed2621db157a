using System.Globalization;
using System.Text;

namespace Mblm.Config;

// Writing the encoder config (reference MBLMEncoderModelConfig layout); its blocks are written like any other.
public static partial class ConfigWriter
{
    /// <summary>
    /// The encoder config as indented JSON in the reference's <c>MBLMEncoderModelConfig</c> layout
    /// (<c>{"mask_token_id": m, "mblm_config": {…}}</c>), which <see cref="ConfigReader.ParseEncoder"/> reads back to an equal config.
    /// </summary>
    public static string ToJson(MblmEncoderConfig config)
    {
        config.Validate();
        var model = ToJson(config.Mblm).TrimEnd('\n').Split('\n');
        var sb = new StringBuilder();
        sb.Append("{\n");
        sb.Append($"  \"mask_token_id\": {config.MaskTokenId.ToString(CultureInfo.InvariantCulture)},\n");
        sb.Append("  \"mblm_config\": ").Append(model[0]).Append('\n');
        foreach (var line in model.Skip(1)) sb.Append("  ").Append(line).Append('\n');
        sb.Append("}\n");
        return sb.ToString();
    }
}
