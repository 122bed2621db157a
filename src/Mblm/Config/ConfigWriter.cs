using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Mblm.Config;

/// <summary>
/// Writes a model config as JSON with the reference's keys (<c>num_tokens</c>, <c>hidden_dims</c>, …, <c>block</c>), the
/// bare layout <see cref="ConfigReader.Parse"/> reads back to an equal config.
/// </summary>
public static partial class ConfigWriter
{
    /// <summary>The config as indented JSON.</summary>
    public static string ToJson(MblmConfig config)
    {
        config.Validate();
        var sb = new StringBuilder();
        sb.Append("{\n");
        sb.Append($"  \"num_tokens\": {config.NumTokens},\n");
        sb.Append($"  \"pad_token_id\": {config.PadTokenId},\n");
        sb.Append($"  \"hidden_dims\": {List(config.HiddenDims)},\n");
        sb.Append($"  \"num_layers\": {List(config.NumLayers)},\n");
        sb.Append($"  \"seq_lens\": {List(config.SeqLens)},\n");
        sb.Append($"  \"train_checkpoint_chunks\": {(config.TrainCheckpointChunks is { } c ? List(c) : "null")},\n");
        sb.Append("  \"block\": [\n");
        for (int i = 0; i < config.Blocks.Count; i++)
        {
            string body = BlockJson(config.Blocks[i]);
            sb.Append("    {").Append(body).Append('}').Append(i + 1 < config.Blocks.Count ? ",\n" : "\n");
        }
        sb.Append("  ]\n}\n");
        return sb.ToString();
    }

    /// <summary>An int list in flow style, <c>[1, 2, 3]</c>: the same text in JSON and YAML.</summary>
    private static string List(IReadOnlyList<int> xs) => "[" + string.Join(", ", xs.Select(x => x.ToString(CultureInfo.InvariantCulture))) + "]";

    /// <summary>A block's fields as the inside of a JSON object: block_type, its fields (from <see cref="StageBlocks"/>), pos_emb_type.</summary>
    private static string BlockJson(StageBlockConfig block)
    {
        var parts = new List<string> { $"\"block_type\": {JsonSerializer.Serialize(block.BlockType)}" };
        foreach (var f in StageBlocks.FieldsOf(block.GetType()))
        {
            string value = f.Property.GetValue(block) switch
            {
                null => "null",
                bool b => b ? "true" : "false",
                double d => D(d),
                float x => D(x),
                string str => JsonSerializer.Serialize(str),
                IFormattable n => n.ToString(null, CultureInfo.InvariantCulture),
                var o => throw new NotSupportedException($"{f.Key}: cannot write {o.GetType()}"),
            };
            parts.Add($"{JsonSerializer.Serialize(f.Key)}: {value}");
        }
        string pos = block.PosEmbType == PosEmbType.None ? "null" : $"\"{StageBlockConfig.PosEmbName(block.PosEmbType)}\"";
        parts.Add($"\"pos_emb_type\": {pos}");
        return string.Join(", ", parts);
    }

    private static string D(double x) => x.ToString("R", CultureInfo.InvariantCulture);
}
