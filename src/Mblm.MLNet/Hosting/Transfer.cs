using Mblm.Model;
using Mblm.Weights;

namespace Mblm.MLNet.Hosting;

/// <summary>Knowledge transfer into a larger vocabulary.</summary>
internal static class Transfer
{
    /// <summary>Copies a saved language model's weights (a pipeline file or safetensors) into <paramref name="model"/>, growing the vocabulary.</summary>
    public static string Load(MblmModel model, string path)
    {
        var tensors = path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)
            ? SafeTensors.Load(path)
            : PipelineArchive.ReadWeights(path, MblmLanguageModelTransformer.StageKind)
              ?? throw new ArgumentException($"'{path}' holds no MBLM language model to transfer from", nameof(path));
        try
        {
            long old = ModelWeights.LoadGrowingVocabulary(model, tensors, path);
            return $"{tensors.Count} tensors from '{path}' (vocabulary {old} → {model.Config.NumTokens})";
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }
}
