using System.Text.Json;
using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>Locates the repository and the test data committed with it (reference golden vectors and configs).</summary>
internal static class TestData
{
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>../shared beside the checkout, or $MBLM_SHARED; null when absent. Only the opt-in
    /// <c>reference-harness</c> tests need it: every other test reads data committed under <c>tests/Mblm.Tests/Golden</c>.</summary>
    public static string? SharedDir
    {
        get
        {
            string? env = Environment.GetEnvironmentVariable("MBLM_SHARED");
            string dir = env ?? Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));
            return Directory.Exists(dir) ? dir : null;
        }
    }

    /// <summary>A case folder of the reference's golden vectors (<c>Golden/reference/{name}</c>, copied next to the test assembly).</summary>
    public static string Golden(string caseName) => Existing(Path.Combine(AppContext.BaseDirectory, "Golden", "reference", caseName));

    /// <summary>One of the reference's five shipped training configs (<c>Golden/reference-configs/{file}</c>).</summary>
    public static string ReferenceConfig(string file) => Existing(Path.Combine(AppContext.BaseDirectory, "Golden", "reference-configs", file));

    private static string Existing(string path) =>
        File.Exists(path) || Directory.Exists(path) ? path
            : throw new FileNotFoundException($"committed test data is missing: {path} (tests/Mblm.Tests/Golden is copied to the test output by the build)", path);

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "MblmMLNet.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("cannot find MblmMLNet.sln above " + AppContext.BaseDirectory);
    }

    /// <summary>Reads <c>{"ids": [[...]], "loss_mask": [[...]] | null}</c>.</summary>
    public static (Tensor Ids, Tensor? Mask) ReadInput(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var ids = doc.RootElement.GetProperty("ids").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();
        long b = ids.Length, l = ids[0].Length;
        var idsT = tensor(ids.SelectMany(r => r).ToArray(), new[] { b, l });
        Tensor? mask = null;
        if (doc.RootElement.TryGetProperty("loss_mask", out var m) && m.ValueKind == JsonValueKind.Array)
            mask = tensor(m.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(x => (float)x.GetDouble())).ToArray(), new[] { b, l });
        return (idsT, mask);
    }

    /// <summary>Small random model with a fixed seed.</summary>
    public static MblmModel RandomModel(MblmConfig config, int seed = 0)
    {
        torch.manual_seed(seed);
        var model = new MblmModel(config);
        model.eval();
        return model;
    }

    public static TransformerBlockConfig T(int heads = 2, int headDim = 4, PosEmbType pos = PosEmbType.Fixed, bool rot = true) =>
        new() { AttnHeadDims = headDim, AttnNumHeads = heads, AttnUseRotEmbs = rot, PosEmbType = pos };

    public static Mamba2BlockConfig S(int dState = 8, int headdim = 8, PosEmbType pos = PosEmbType.None) =>
        new() { DState = dState, DConv = 4, Expand = 2, Headdim = headdim, PosEmbType = pos };

    public static MblmConfig Cfg(int[] dims, int[] seqLens, StageBlockConfig[] blocks, int[]? layers = null, int numTokens = 257, int pad = 256) => new MblmConfig
    {
        NumTokens = numTokens, PadTokenId = pad, HiddenDims = dims, SeqLens = seqLens,
        NumLayers = layers ?? dims.Select(_ => 1).ToArray(), Blocks = blocks,
    }.Validate();
}
