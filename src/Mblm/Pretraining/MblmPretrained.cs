using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Pretraining;

/// <summary>
/// Pretrained MBLM models in a Hugging Face style folder: <c>config.json</c> (the reference's keys), <c>model.safetensors</c>
/// (the reference's state-dict names, F32 or BF16: BF16 loads exactly into F32) and a model card, <c>README.md</c>.
/// <c>mblm pretrain</c> writes such folders; the repository ships one under <c>models/</c> (<see cref="BaseName"/>).
/// A model is named by its folder, or by its name alone, looked up in the folders of <c>MBLM_MODELS</c>
/// (separated like PATH), then in <c>models/</c> beside the application, then in <c>models/</c> of the current folder and
/// each folder above it (a checkout of this repository).
/// </summary>
public static class MblmPretrained
{
    /// <summary>The base model the repository ships (<c>models/mblm-base</c>).</summary>
    public const string BaseName = "mblm-base";

    /// <summary>The folder a name or path stands for; throws <see cref="DirectoryNotFoundException"/> listing where it looked.</summary>
    public static string Resolve(string nameOrDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrDirectory);
        if (Directory.Exists(nameOrDirectory)) return Path.GetFullPath(nameOrDirectory);
        bool isName = nameOrDirectory.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') && !nameOrDirectory.StartsWith('.');
        if (!isName) throw new DirectoryNotFoundException($"pretrained model folder '{nameOrDirectory}' does not exist");
        var places = new List<string>();
        foreach (string root in (Environment.GetEnvironmentVariable("MBLM_MODELS") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            places.Add(Path.Combine(root, nameOrDirectory));
        places.Add(Path.Combine(AppContext.BaseDirectory, "models", nameOrDirectory));
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
            places.Add(Path.Combine(dir.FullName, "models", nameOrDirectory));
        foreach (string place in places)
            if (File.Exists(Path.Combine(place, "config.json"))) return Path.GetFullPath(place);
        throw new DirectoryNotFoundException($"pretrained model '{nameOrDirectory}' was not found: looked for {nameOrDirectory}/config.json in " +
                                             $"MBLM_MODELS, {Path.Combine(AppContext.BaseDirectory, "models")} and models/ of {Environment.CurrentDirectory} and the folders above it");
    }

    /// <summary>The model's config (<c>config.json</c>, checked).</summary>
    public static MblmConfig LoadConfig(string nameOrDirectory) => ConfigReader.LoadModel(ConfigFile(Resolve(nameOrDirectory)));

    /// <summary>The model with its weights, in evaluation mode, on <paramref name="device"/> (default CPU).</summary>
    public static MblmModel Load(string nameOrDirectory, Device? device = null)
    {
        string dir = Resolve(nameOrDirectory);
        var model = new MblmModel(ConfigReader.LoadModel(ConfigFile(dir)));
        try
        {
            ModelWeights.Load(model, WeightsFile(dir));
            if (device is not null) model.to(device);
            model.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies a pretrained model's weights into <paramref name="model"/>, a model of the same widths, depths and blocks whose
    /// vocabulary may be larger (task tokens: the new rows keep their initialisation) and whose context may differ: stages
    /// without a learned position table fit any context; a learned table (<c>pos_emb_type: fixed</c>) gives its first rows
    /// to a shorter context and refuses a longer one. Returns a line saying what was loaded.
    /// </summary>
    public static string LoadInto(MblmModel model, string nameOrDirectory)
    {
        ArgumentNullException.ThrowIfNull(model);
        string dir = Resolve(nameOrDirectory), weights = WeightsFile(dir);
        var config = ConfigReader.LoadModel(ConfigFile(dir));
        var want = model.Config;
        if (!config.HiddenDims.SequenceEqual(want.HiddenDims) || !config.NumLayers.SequenceEqual(want.NumLayers) || config.SeqLens.Count != want.SeqLens.Count
            || config.SeqLens[^1] != want.SeqLens[^1] || config.SeqLens.Skip(1).SkipLast(1).SequenceEqual(want.SeqLens.Skip(1).SkipLast(1)) is false
            || !config.Blocks.SequenceEqual(want.Blocks))
            throw new ArgumentException($"the model's shape differs from the pretrained model in '{dir}': take the shape from it " +
                                        $"(MblmPretrained.LoadConfig, context and vocabulary may change)", nameof(model));
        var tensors = ModelWeights.ReadFile(weights);
        try
        {
            for (int i = 0; i < want.SeqLens.Count; i++)
            {
                string key = $"pos_embs.{i}.weight";
                if (!tensors.TryGetValue(key, out var table)) continue;
                if (table.shape[0] < want.SeqLens[i])
                    throw new ArgumentException($"the pretrained model in '{dir}' learned {table.shape[0]} positions at stage {i}; the model needs {want.SeqLens[i]}", nameof(model));
                if (table.shape[0] > want.SeqLens[i])
                {
                    tensors[key] = table[..(int)want.SeqLens[i]].clone();
                    table.Dispose();
                }
            }
            long vocabulary = ModelWeights.LoadGrowingVocabulary(model, tensors, weights);
            return $"{tensors.Count} tensors from '{dir}' (vocabulary {vocabulary} → {want.NumTokens}, context {config.MaxContext} → {want.MaxContext})";
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    /// <summary>
    /// Writes <paramref name="model"/> as a model folder: <c>config.json</c>, <c>model.safetensors</c> (BF16 when
    /// <paramref name="bfloat16"/>, half the size) and, when given, the card <c>README.md</c>; each file atomically.
    /// </summary>
    public static void Save(MblmModel model, string directory, string? card = null, bool bfloat16 = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(Path.Combine(directory, "config.json"), ConfigWriter.ToJson(model.Config));
        using (var scope = NewDisposeScope())
        {
            var state = model.state_dict().ToDictionary(kv => kv.Key, kv => bfloat16 && kv.Value.is_floating_point() ? kv.Value.to(ScalarType.BFloat16) : kv.Value);
            SafeTensors.Save(state, Path.Combine(directory, "model.safetensors"));
        }
        if (card is not null) AtomicFile.WriteAllText(Path.Combine(directory, "README.md"), card);
    }

    private static string ConfigFile(string dir) =>
        Path.Combine(dir, "config.json") is var p && File.Exists(p) ? p : throw new FileNotFoundException($"pretrained model folder '{dir}' has no config.json", p);

    private static string WeightsFile(string dir) =>
        Path.Combine(dir, "model.safetensors") is var p && File.Exists(p) ? p : throw new FileNotFoundException($"pretrained model folder '{dir}' has no model.safetensors", p);
}
