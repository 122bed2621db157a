using System.Globalization;
using System.Text;

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
        static string List(IReadOnlyList<int> xs) => "[" + string.Join(", ", xs.Select(x => x.ToString(CultureInfo.InvariantCulture))) + "]";
        static string D(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        static string B(bool x) => x ? "true" : "false";
        static string Pos(PosEmbType t) => t == PosEmbType.None ? "null" : $"\"{StageBlockConfig.PosEmbName(t)}\"";
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
            string body = config.Blocks[i] switch
            {
                TransformerBlockConfig t => $"\"block_type\": \"transformer\", \"attn_head_dims\": {t.AttnHeadDims}, \"attn_num_heads\": {t.AttnNumHeads}, " +
                    $"\"attn_use_rot_embs\": {B(t.AttnUseRotEmbs)}, \"attn_dropout\": {D(t.AttnDropout)}, \"ff_multiplier\": {t.FfMultiplier}, " +
                    $"\"ff_dropout\": {D(t.FfDropout)}, \"use_flash_attn\": {B(t.UseFlashAttn)}, \"pos_emb_type\": {Pos(t.PosEmbType)}",
                Mamba2BlockConfig m => $"\"block_type\": \"mamba2\", \"d_state\": {m.DState}, \"d_conv\": {m.DConv}, \"expand\": {m.Expand}, " +
                    $"\"headdim\": {m.Headdim}, \"dropout\": {D(m.Dropout)}, \"pos_emb_type\": {Pos(m.PosEmbType)}",
                // [encoder] registry touch point (the encoder block has the causal block's fields; see ConfigWriter.Encoder.cs)
                TransformerEncoderBlockConfig e => $"\"block_type\": \"{e.BlockType}\", \"attn_head_dims\": {e.AttnHeadDims}, \"attn_num_heads\": {e.AttnNumHeads}, " +
                    $"\"attn_use_rot_embs\": {B(e.AttnUseRotEmbs)}, \"attn_dropout\": {D(e.AttnDropout)}, \"ff_multiplier\": {e.FfMultiplier}, " +
                    $"\"ff_dropout\": {D(e.FfDropout)}, \"use_flash_attn\": {B(e.UseFlashAttn)}, \"pos_emb_type\": {Pos(e.PosEmbType)}",
                var other => throw new NotSupportedException($"block type '{other.BlockType}' cannot be written"),
            };
            sb.Append("    {").Append(body).Append('}').Append(i + 1 < config.Blocks.Count ? ",\n" : "\n");
        }
        sb.Append("  ]\n}\n");
        return sb.ToString();
    }
}
