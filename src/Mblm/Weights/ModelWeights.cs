using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Weights;

/// <summary>A weights file that does not fit the model: lists every missing, unexpected and mismatched key.</summary>
public sealed class WeightsMismatchException : Exception
{
    /// <summary>Keys the model has and the file lacks.</summary>
    public IReadOnlyList<string> Missing { get; }
    /// <summary>Keys the file has and the model lacks.</summary>
    public IReadOnlyList<string> Unexpected { get; }
    /// <summary>Keys present in both with different shapes (<c>name: file [..] vs model [..]</c>).</summary>
    public IReadOnlyList<string> Mismatched { get; }

    internal WeightsMismatchException(string source, List<string> missing, List<string> unexpected, List<string> mismatched)
        : base(Describe(source, missing, unexpected, mismatched)) => (Missing, Unexpected, Mismatched) = (missing, unexpected, mismatched);

    private static string Describe(string source, List<string> missing, List<string> unexpected, List<string> mismatched)
    {
        var sb = new StringBuilder($"weights '{source}' do not match the model:");
        if (missing.Count > 0) sb.Append($"\n  missing ({missing.Count}): ").Append(string.Join(", ", missing));
        if (unexpected.Count > 0) sb.Append($"\n  unexpected ({unexpected.Count}): ").Append(string.Join(", ", unexpected));
        if (mismatched.Count > 0) sb.Append($"\n  shape mismatch ({mismatched.Count}): ").Append(string.Join("; ", mismatched));
        return sb.ToString();
    }
}

/// <summary>Loads and saves a module's state (parameters and persistent buffers) by state-dict name.</summary>
public static class ModelWeights
{
    /// <summary>
    /// Copies <paramref name="tensors"/> into the module's state. With <paramref name="strict"/> (the default) every key must
    /// match by name and shape, and all problems are reported together in one <see cref="WeightsMismatchException"/>
    /// before anything is copied. Values are converted to each target's dtype and device.
    /// </summary>
    public static void Load(nn.Module module, IReadOnlyDictionary<string, Tensor> tensors, string source = "weights", bool strict = true)
    {
        var state = module.state_dict();
        var missing = state.Keys.Where(k => !tensors.ContainsKey(k)).ToList();
        var unexpected = tensors.Keys.Where(k => !state.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var mismatched = state.Keys.Where(tensors.ContainsKey)
            .Where(k => !state[k].shape.SequenceEqual(tensors[k].shape))
            .Select(k => $"{k}: file [{string.Join(", ", tensors[k].shape)}] vs model [{string.Join(", ", state[k].shape)}]").ToList();
        if (mismatched.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
            throw new WeightsMismatchException(source, missing, unexpected, mismatched);
        using var noGrad = no_grad();
        foreach (var (name, target) in state)
            if (tensors.TryGetValue(name, out var value))
                target.copy_(value.to(target.dtype, target.device));
    }

    /// <summary>Loads a safetensors file into the module (strict by default); see <see cref="Load(nn.Module, IReadOnlyDictionary{string, Tensor}, string, bool)"/>.</summary>
    public static void Load(nn.Module module, string path, bool strict = true)
    {
        var tensors = SafeTensors.Load(path);
        try { Load(module, tensors, path, strict); }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    /// <summary>Saves the module's state dict (parameters and persistent buffers) to a safetensors file, atomically.</summary>
    public static void Save(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        SafeTensors.Save(module.state_dict(), path, metadata);
}
