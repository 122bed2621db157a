using CustomBlock;
using Mblm.Config;
using Mblm.MLNet;
using Mblm.Model;
using Microsoft.ML;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>
/// One small example config per registered block type. The causality, decoder-equals-forward and persistence checks run
/// over every entry; <see cref="BlockTests.EveryRegisteredBlock_HasAnExample"/> makes a new block without an entry fail.
/// </summary>
internal static class BlockExamples
{
    static BlockExamples() => StageBlocks.Register<LstmBlockConfig>("lstm");

    public static IReadOnlyDictionary<string, StageBlockConfig> ByName { get; } = new Dictionary<string, StageBlockConfig>
    {
        ["transformer"] = T(),
        ["mamba2"] = S(),
        ["lstm"] = new LstmBlockConfig(),
        ["transformerEncoder"] = new TransformerEncoderBlockConfig { AttnHeadDims = 4, AttnNumHeads = 2, AttnUseRotEmbs = true, PosEmbType = PosEmbType.Fixed },
    };

    /// <summary>Hierarchies that put each registered causal block at every level: alone, global, local.</summary>
    public static IEnumerable<object[]> Hierarchies(int[] seqLens1, int[] seqLens2) => ByName
        .Where(b => b.Value.IsCausal)
        .SelectMany(b => new object[][]
        {
            [$"{b.Key} alone", Cfg([16], seqLens1, [b.Value])],
            [$"{b.Key} global", Cfg([16, 8], seqLens2, [b.Value, T()])],
            [$"{b.Key} local", Cfg([16, 8], seqLens2, [T(), b.Value], layers: [1, 2])],
        });

    /// <summary>Registers the plug-in blocks (idempotent).</summary>
    public static void EnsureRegistered() => _ = ByName.Count;
}

[TestClass]
public sealed class BlockTests
{
    [TestMethod]
    public void EveryRegisteredBlock_HasAnExample()
    {
        BlockExamples.EnsureRegistered();
        foreach (string name in StageBlocks.Names)
            Assert.IsTrue(BlockExamples.ByName.ContainsKey(name), $"block_type '{name}' is registered but has no entry in BlockExamples: add one so the checks cover it");
    }

    [TestMethod]
    public void FieldNames_AreTheReferenceKeys()
    {
        CollectionAssert.AreEqual(new[] { "attn_head_dims", "attn_num_heads", "attn_use_rot_embs", "attn_dropout", "ff_multiplier", "ff_dropout", "use_flash_attn" },
            StageBlocks.FieldsOf(typeof(TransformerBlockConfig)).Select(f => f.Key).ToArray());
        CollectionAssert.AreEqual(new[] { "d_state", "d_conv", "expand", "headdim", "dropout" },
            StageBlocks.FieldsOf(typeof(Mamba2BlockConfig)).Select(f => f.Key).ToArray());
        Assert.AreEqual("d_state", StageBlocks.SnakeCase("DState"));
    }

    [TestMethod]
    public void EveryBlock_RoundTripsThroughTheConfigWriter_AndCountsItsParameters()
    {
        BlockExamples.EnsureRegistered();
        foreach (var (name, block) in BlockExamples.ByName)
        {
            var config = Cfg([16, 8], [4, 3], [block, T()], layers: [2, 1]);
            var back = ConfigReader.Parse(ConfigWriter.ToJson(config)).Model;
            Assert.AreEqual(block, back.Blocks[0], name);
            Assert.AreEqual(name, back.Blocks[0].BlockType);
            using var model = block.IsCausal ? new MblmModel(config) : new MblmEncoder(new MblmEncoderConfig { MaskTokenId = 255, Mblm = config }).Mblm;
            Assert.AreEqual(model.parameters().Sum(p => p.numel()), config.CountParameters(), $"{name}: CountParameters must equal the built model's");
        }
    }

    [TestMethod]
    public void Registration_RefusesConflicts_AndUnknownTypesNameTheRegisteredOnes()
    {
        BlockExamples.EnsureRegistered();
        StageBlocks.Register<LstmBlockConfig>("lstm"); // the same pair again: a no-op
        Assert.ThrowsExactly<ArgumentException>(() => StageBlocks.Register<LstmBlockConfig>("lstm2"));
        Assert.ThrowsExactly<ArgumentException>(() => StageBlocks.Register<Mamba2BlockConfig>("lstm"));
        var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse("""
            {"num_tokens": 257, "pad_token_id": 256, "hidden_dims": [8], "num_layers": [1], "seq_lens": [4],
             "train_checkpoint_chunks": null, "block": {"block_type": "gru"}}
            """));
        Assert.AreEqual("block.block_type", e.Key);
        StringAssert.Contains(e.Message, "'lstm'");
        var unknownField = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse("""
            {"num_tokens": 257, "pad_token_id": 256, "hidden_dims": [8], "num_layers": [1], "seq_lens": [4],
             "train_checkpoint_chunks": null, "block": {"block_type": "lstm", "hidden": 3}}
            """));
        Assert.AreEqual("block.hidden", unknownField.Key);
    }

    [TestMethod]
    public void ConfigFileWithPluginBlock_TrainsGeneratesAndSurvivesPipelineSaveLoad()
    {
        BlockExamples.EnsureRegistered();
        var config = ConfigReader.Parse("""
            {"num_tokens": 257, "pad_token_id": 256, "hidden_dims": [16, 8], "num_layers": [1, 1], "seq_lens": [8, 4],
             "train_checkpoint_chunks": null,
             "block": [{"block_type": "lstm", "dropout": 0.0}, {"block_type": "transformer", "attn_head_dims": 4, "attn_num_heads": 2,
                        "attn_use_rot_embs": true, "pos_emb_type": "fixed"}]}
            """).Model;
        var ml = new MLContext(seed: 1);
        var rows = Enumerable.Range(0, 24).Select(i => new TextRow { Text = $"row {i}: the quick brown fox" }).ToArray();
        var data = ml.Data.LoadFromEnumerable(rows);
        using var model = ml.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options
        {
            InputColumnName = "Text", ModelConfig = config, MaxSteps = 4, BatchSize = 4, MaxNewBytes = 6,
        }).Fit(data);
        string path = Path.Combine(Path.GetTempPath(), $"mblm-lstm-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Mblm().SaveModel(model, data.Schema, path);
            var loaded = ml.Mblm().LoadModel(path, out _);
            var before = ml.Data.CreateEnumerable<Scored>(model.Transform(data), reuseRowObject: false).ToArray();
            var after = ml.Data.CreateEnumerable<Scored>(loaded.Transform(data), reuseRowObject: false).ToArray();
            for (int i = 0; i < rows.Length; i++)
            {
                Assert.AreEqual(before[i].BitsPerByte, after[i].BitsPerByte, 1e-6);
                Assert.AreEqual(before[i].Completion, after[i].Completion);
                Assert.IsTrue(after[i].Completion.Length > 0, "a completion was generated");
            }
            (loaded as IDisposable)?.Dispose();
        }
        finally { File.Delete(path); }
    }

    public sealed class TextRow { public string Text { get; set; } = ""; }
    public sealed class Scored
    {
        public float BitsPerByte { get; set; }
        public string Completion { get; set; } = "";
    }
}
