using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Mblm.Config;

public static partial class ConfigWriter
{
    /// <summary>
    /// The config as a reference training YAML (the layout of the reference's <c>configs/*.yaml</c>, parsed by its
    /// <c>TrainEntryConfig</c>): <c>params</c> with the model keys and <c>input_seq_len</c>, <c>train</c> and <c>io</c> from
    /// <paramref name="settings"/> (defaults when null). Blocks are written as JSON flow mappings, which YAML reads;
    /// floats always carry a decimal point (PyYAML reads <c>1e-05</c> as a string). <see cref="ConfigReader.Parse"/> reads
    /// the file back to an equal config.
    /// </summary>
    public static string ToTrainingYaml(MblmConfig config, ReferenceTrainingSettings? settings = null)
    {
        config.Validate();
        var s = (settings ?? new ReferenceTrainingSettings()).Validate(config);
        static string Str(string x) => JsonSerializer.Serialize(x);
        static string I(long x) => x.ToString(CultureInfo.InvariantCulture);
        var sb = new StringBuilder();
        sb.Append("# A reference (mblm 0.4.0) training config written by `mblm export --format reference`; model.pth beside it\n");
        sb.Append("# holds the weights as {\"MODEL\": state_dict, \"LOSS\": None}. Set io.dataset_dir and io.output_dir for your run.\n");
        sb.Append("params:\n");
        sb.Append($"  num_tokens: {config.NumTokens}\n");
        sb.Append($"  pad_token_id: {config.PadTokenId}\n");
        sb.Append($"  input_seq_len: {I(s.InputSeqLen ?? config.MaxContext)}\n");
        sb.Append($"  hidden_dims: {List(config.HiddenDims)}\n");
        sb.Append($"  num_layers: {List(config.NumLayers)}\n");
        sb.Append($"  seq_lens: {List(config.SeqLens)}\n");
        sb.Append($"  train_checkpoint_chunks: {(config.TrainCheckpointChunks is { } c ? List(c) : "null")}\n");
        sb.Append("  block:\n");
        foreach (var block in config.Blocks) sb.Append("    - {").Append(BlockJson(block)).Append("}\n");
        sb.Append("train:\n");
        sb.Append($"  target_elements: {I(s.TargetElements)}\n");
        sb.Append($"  target_elements_strategy: {s.TargetElementsStrategy}\n");
        sb.Append($"  batch_size: {s.BatchSize}\n");
        sb.Append($"  learning_rate: {YamlFloat(s.LearningRate)}\n");
        sb.Append($"  gradient_accumulate_every: {s.GradientAccumulateEvery}\n");
        sb.Append($"  warmup_steps_perc: {YamlFloat(s.WarmupStepsPerc)}\n");
        sb.Append($"  gradient_clipping: {(s.GradientClipping is double g ? YamlFloat(g) : "null")}\n");
        sb.Append($"  shuffle_train: {(s.ShuffleTrain ? "true" : "false")}\n");
        sb.Append($"  shuffle_eval: {(s.ShuffleEval ? "true" : "false")}\n");
        sb.Append($"  max_eval_steps: {(s.MaxEvalSteps is long m ? I(m) : "null")}\n");
        sb.Append("io:\n");
        sb.Append($"  name_model: {Str(s.NameModel)}\n");
        sb.Append($"  output_dir: {Str(s.OutputDir)}\n");
        sb.Append($"  dataset_dir: {Str(s.DatasetDir)}\n");
        sb.Append($"  dataset_id: {Str(s.DatasetId)}\n");
        sb.Append($"  num_models_to_save: {s.NumModelsToSave}\n");
        sb.Append($"  validate_amount: {s.ValidateAmount}\n");
        sb.Append($"  log_train_loss_amount: {s.LogTrainLossAmount}\n");
        if (s.ResumeCheckpointFile is { } checkpoint)
        {
            sb.Append("resume:\n");
            sb.Append($"  checkpoint_file: {Str(checkpoint)}\n");
            sb.Append("  next_epoch_index: 0\n");
            sb.Append("  next_batch_index: 0\n");
            sb.Append("  migrate_embeddings: false\n");
            sb.Append("  rename_modules: false\n");
        }
        return sb.ToString();
    }

    // A float YAML 1.1 (PyYAML) and YAML 1.2 both read as a float: digits '.' digits [e±digits].
    private static string YamlFloat(double x)
    {
        string r = x.ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOfAny(['E', 'e']);
        string mantissa = e < 0 ? r : r[..e], exponent = e < 0 ? "" : r[(e + 1)..];
        if (!mantissa.Contains('.')) mantissa += ".0";
        if (exponent.Length > 0 && exponent[0] is not ('+' or '-')) exponent = "+" + exponent;
        return exponent.Length == 0 ? mantissa : $"{mantissa}e{exponent}";
    }
}
