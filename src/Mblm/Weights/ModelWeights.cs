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
        var state = Check(module, tensors, source, strict);
        using var noGrad = no_grad();
        foreach (var (name, target) in state)
            if (tensors.TryGetValue(name, out var value))
                target.copy_(value.to(target.dtype, target.device));
    }

    /// <summary>
    /// The checks of <see cref="Load(nn.Module, IReadOnlyDictionary{string, Tensor}, string, bool)"/> without the copy (names,
    /// shapes, convertible dtypes), so that several modules can be checked before any of them changes; returns the module's
    /// state dict.
    /// </summary>
    internal static Dictionary<string, Tensor> Check(nn.Module module, IReadOnlyDictionary<string, Tensor> tensors, string source, bool strict = true)
    {
        var state = module.state_dict();
        var missing = state.Keys.Where(k => !tensors.ContainsKey(k)).ToList();
        var unexpected = tensors.Keys.Where(k => !state.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var mismatched = state.Keys.Where(tensors.ContainsKey)
            .Where(k => !state[k].shape.SequenceEqual(tensors[k].shape))
            .Select(k => $"{k}: file [{string.Join(", ", tensors[k].shape)}] vs model [{string.Join(", ", state[k].shape)}]").ToList();
        if (mismatched.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
            throw new WeightsMismatchException(source, missing, unexpected, mismatched);
        RequireCompatibleDtypes(state, tensors, source);
        return state;
    }

    /// <summary>
    /// Loads a weights file into the module (strict by default; see
    /// <see cref="Load(nn.Module, IReadOnlyDictionary{string, Tensor}, string, bool)"/>): safetensors, or a PyTorch
    /// <c>.pth</c> (the reference trainer's checkpoint or a bare state dict), told apart by content (<see cref="ReadFile"/>).
    /// </summary>
    public static void Load(nn.Module module, string path, bool strict = true)
    {
        var tensors = ReadFile(path);
        try { Load(module, tensors, path, strict); }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    /// <summary>
    /// Reads every tensor of a weights file, whatever its extension: a zip (<c>PK</c>) is a PyTorch <c>torch.save</c> file
    /// read by <see cref="PyTorchCheckpoint"/> (its state dict, under <c>"MODEL"</c> for the reference trainer's
    /// checkpoints), anything else a safetensors file. PyTorch's legacy (pre-1.6) pickle format is refused with a message
    /// saying how to re-save it. CPU tensors; the caller disposes them. Errors are <see cref="MblmFormatException"/>s naming
    /// the file and the entry or tensor.
    /// </summary>
    public static Dictionary<string, Tensor> ReadFile(string path)
    {
        if (Directory.Exists(path)) throw new MblmFormatException(path, null, "is a directory, not a weights file");
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file '{path}' does not exist", path);
        using var stream = File.OpenRead(path);
        Span<byte> head = stackalloc byte[4];
        head = head[..SafeTensors.ReadAtMost(stream, head)];
        if (PyTorchCheckpoint.IsZip(head)) return PyTorchCheckpoint.Load(stream, path).Tensors;
        if (PyTorchCheckpoint.IsLegacyPickle(head))
            throw new MblmFormatException(path, null, "is in PyTorch's legacy (before 1.6) torch.save format, which is not read: " +
                                                      "load it in PyTorch and save it again with torch.save (the zip format)");
        stream.Position = 0;
        return SafeTensors.Load(stream, path);
    }

    /// <summary>
    /// Loads weights of a model with a smaller vocabulary (the reference's token-embedding migration): every byte-embedding
    /// table (<c>token_embs_rev.0.weight</c>, <c>token_embs_rev.k.0.weight</c>) and the LM head (<c>to_logits.weight</c>,
    /// <c>to_logits.bias</c>) get rows [0, V_old) from the file and keep their fresh initialisation above; every other tensor
    /// must match by name and shape (strict). Returns the old vocabulary size.
    /// </summary>
    public static long LoadGrowingVocabulary(nn.Module module, IReadOnlyDictionary<string, Tensor> tensors, string source = "weights")
    {
        var state = module.state_dict();
        static bool Grows(string name) => name is "to_logits.weight" or "to_logits.bias" || System.Text.RegularExpressions.Regex.IsMatch(name, @"^token_embs_rev\.(0|\d+\.0)\.weight$");
        var same = new Dictionary<string, Tensor>();
        long oldVocab = -1;
        var problems = new List<string>();
        foreach (var (name, value) in tensors)
        {
            if (Grows(name) && state.TryGetValue(name, out var target) && value.shape.Length == target.shape.Length && value.shape[0] < target.shape[0]
                && value.shape.Skip(1).SequenceEqual(target.shape.Skip(1)))
            {
                if (oldVocab >= 0 && oldVocab != value.shape[0]) problems.Add($"{name}: {value.shape[0]} rows, other tables have {oldVocab}");
                oldVocab = value.shape[0];
                continue;
            }
            same[name] = value;
        }
        if (problems.Count > 0) throw new ArgumentException($"{source}: inconsistent vocabulary sizes: {string.Join("; ", problems)}");
        var grown = tensors.Keys.Where(k => !same.ContainsKey(k)).ToList();
        // Everything else, strictly; the grown tensors count as present.
        var missing = state.Keys.Where(k => !tensors.ContainsKey(k)).ToList();
        var unexpected = same.Keys.Where(k => !state.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var mismatched = same.Keys.Where(state.ContainsKey).Where(k => !state[k].shape.SequenceEqual(same[k].shape))
            .Select(k => $"{k}: file [{string.Join(", ", same[k].shape)}] vs model [{string.Join(", ", state[k].shape)}]").ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || mismatched.Count > 0) throw new WeightsMismatchException(source, missing, unexpected, mismatched);
        RequireCompatibleDtypes(state, tensors, source);
        using var noGrad = no_grad();
        foreach (var (name, value) in same) state[name].copy_(value.to(state[name].dtype, state[name].device));
        foreach (var name in grown)
        {
            var value = tensors[name];
            state[name][..(int)value.shape[0]].copy_(value.to(state[name].dtype, state[name].device));
        }
        return oldVocab < 0 ? state.TryGetValue("to_logits.bias", out var b) ? b.shape[0] : -1 : oldVocab;
    }

    // Floating-point values convert between precisions (F32 → BF16 and back), but an integer or bool tensor never becomes a
    // float parameter, nor the reverse: such a file was edited or is not this model's.
    private static void RequireCompatibleDtypes(Dictionary<string, Tensor> state, IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        foreach (var (name, value) in tensors)
            if (state.TryGetValue(name, out var target) && value.dtype != target.dtype && !(value.is_floating_point() && target.is_floating_point()))
                throw new MblmFormatException(source, name, $"is stored as {value.dtype}, the model's tensor is {target.dtype}: not convertible");
    }

    /// <summary>Saves the module's state dict (parameters and persistent buffers) to a safetensors file, atomically.</summary>
    public static void Save(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        SafeTensors.Save(module.state_dict(), path, metadata);
}
