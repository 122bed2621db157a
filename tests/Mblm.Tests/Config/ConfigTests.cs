using Mblm.Config;

namespace Mblm.Tests;

[TestClass]
public sealed class ConfigTests
{
    [TestMethod]
    [DataRow("pg19_30bb_360m_1d_t.yaml", 361_451_776L, 1, "transformer")]
    [DataRow("pg19_30bb_360m_2d_ss.yaml", 0L, 2, "mamba2,mamba2")]
    [DataRow("pg19_30bb_360m_2d_st.yaml", 0L, 2, "mamba2,transformer")]
    [DataRow("pg19_200bb_360m_3d_stt.yaml", 0L, 3, "mamba2,transformer,transformer")]
    [DataRow("clevr_7mi_360m_1d_s_ft.yaml", 0L, 1, "mamba2")]
    public void ShippedReferenceConfigs_LoadUnchanged(string file, long exactParams, int stages, string blockTypes)
    {
        var loaded = ConfigReader.LoadFile(TestData.ReferenceConfig(file));
        Assert.AreEqual(stages, loaded.Model.NumStages);
        Assert.AreEqual(blockTypes, string.Join(",", loaded.Model.Blocks.Select(b => b.BlockType)));
        Assert.IsNotNull(loaded.InputSeqLen);
        Assert.IsNotNull(loaded.Train);
        if (exactParams > 0) Assert.AreEqual(exactParams, loaded.Model.CountParameters());
    }

    [TestMethod]
    [DataRow("pg19_30bb_360m_1d_t.yaml", 361.45)]
    [DataRow("pg19_30bb_360m_2d_ss.yaml", 360.85)]
    [DataRow("pg19_30bb_360m_2d_st.yaml", 358.90)]
    [DataRow("pg19_200bb_360m_3d_stt.yaml", 362.87)]
    [DataRow("clevr_7mi_360m_1d_s_ft.yaml", 356.98)]
    public void ShippedReferenceConfigs_ParameterCountsAsComputedInMblmMd(string file, double millions)
    {
        var model = ConfigReader.LoadModel(TestData.ReferenceConfig(file));
        Assert.AreEqual(millions, Math.Round(model.CountParameters() / 1e6, 2), 1e-9);
    }

    [TestMethod]
    public void TrainingYaml_UnderscoredAnd64BitIntegers()
    {
        var file = ConfigReader.LoadFile(TestData.ReferenceConfig("pg19_200bb_360m_3d_stt.yaml"));
        Assert.AreEqual(1_048_576L, file.InputSeqLen);
        Assert.AreEqual(200_000_000_000L, file.Train!.TargetElements);
        Assert.AreEqual(48, file.Train.GradientAccumulateEvery);
        CollectionAssert.AreEqual(new[] { 10, 20 }, file.Model.TrainCheckpointChunks!.ToArray());
        Assert.AreEqual(PosEmbType.None, file.Model.Blocks[0].PosEmbType);
        Assert.AreEqual(PosEmbType.Fixed, file.Model.Blocks[1].PosEmbType);
        var t = (TransformerBlockConfig)file.Model.Blocks[1];
        Assert.AreEqual(2, t.FfMultiplier, "ff_multiplier defaults to 2");
        Assert.IsTrue(t.UseFlashAttn);
    }

    internal const string Minimal = """
        num_tokens: 257
        pad_token_id: 256
        hidden_dims: [16, 8]
        num_layers: [1, 1]
        seq_lens: [4, 3]
        train_checkpoint_chunks: null
        block:
          attn_head_dims: 4
          attn_num_heads: 2
          attn_use_rot_embs: true
          pos_emb_type: fixed
        """;

    [TestMethod]
    public void SingleBlock_AppliesToEveryStage_AndJsonEqualsYaml()
    {
        var yaml = ConfigReader.Parse(Minimal).Model;
        Assert.AreEqual(2, yaml.Blocks.Count);
        Assert.IsTrue(yaml.Blocks.All(b => b is TransformerBlockConfig));
        var json = ConfigReader.Parse("""
            {"num_tokens": 257, "pad_token_id": 256, "hidden_dims": [16, 8], "num_layers": [1, 1], "seq_lens": [4, 3],
             "train_checkpoint_chunks": null,
             "block": {"block_type": "transformer", "attn_head_dims": 4, "attn_num_heads": 2, "attn_use_rot_embs": true, "pos_emb_type": "fixed"}}
            """).Model;
        Assert.AreEqual(yaml.Blocks[0], json.Blocks[0]);
        Assert.AreEqual(yaml.CountParameters(), json.CountParameters());
        Assert.AreEqual(9_617L, yaml.CountParameters(), "mblm.md §7.4: the 2-stage test model has 9,617 parameters");
    }

    [TestMethod]
    public void MissingBlockType_IsDecidedByFields()
    {
        var mamba = ConfigReader.Parse(Minimal.Replace("""
              attn_head_dims: 4
              attn_num_heads: 2
              attn_use_rot_embs: true
            """, """
              d_state: 8
              d_conv: 4
              expand: 2
              headdim: 8
            """)).Model;
        Assert.IsTrue(mamba.Blocks.All(b => b is Mamba2BlockConfig));
    }

    [TestMethod]
    [DataRow("num_layers: [1, 1]", "num_layers: [1]", "num_layers", "one entry per stage")]
    [DataRow("pad_token_id: 256", "pad_token_id: 300", "pad_token_id", "[0, num_tokens)")]
    [DataRow("attn_num_heads: 2", "attn_num_heads: 0", "block.attn_num_heads", "positive")]
    [DataRow("pos_emb_type: fixed", "pos_emb_type: sinus", "block.pos_emb_type", "'fixed', 'rope' or null")]
    [DataRow("attn_num_heads: 2", "attn_num_heads: 2\n  attn_heads: 3", "block.attn_heads", "not a field")]
    [DataRow("attn_num_heads: 2", "attn_num_heads: 2\n  block_type: mamba1", "block.block_type", "mamba1")]
    [DataRow("attn_num_heads: 2", "attn_num_heads: 2\n  d_state: 4", "block", "mixes")]
    [DataRow("hidden_dims: [16, 8]", "hidden_dims: [16, eight]", "hidden_dims[1]", "integer")]
    [DataRow("train_checkpoint_chunks: null", "train_checkpoint_chunks: [2, 3]", "train_checkpoint_chunks", "one entry per stage after the first")]
    [DataRow("train_checkpoint_chunks: null\n", "", "train_checkpoint_chunks", "required")]
    [DataRow("num_tokens: 257", "num_tokens: 257\nnum_tokenz: 1", "num_tokenz", "not a model config key")]
    public void InvalidConfig_FailsNamingKeyAndRule(string from, string to, string key, string rule)
    {
        string text = Minimal.Replace(from, to);
        Assert.AreNotEqual(Minimal, text, "test setup: replacement must apply");
        var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse(text));
        Assert.AreEqual(key, e.Key, e.Message);
        StringAssert.Contains(e.Message, rule);
    }

    [TestMethod]
    public void MambaHeaddim_MustDivideInnerWidth()
    {
        var e = Assert.ThrowsExactly<ConfigException>(() => TestData.Cfg([10], [8], [TestData.S(headdim: 3)]));
        Assert.AreEqual("block[0].headdim", e.Key);
        StringAssert.Contains(e.Message, "divide");
    }

    [TestMethod]
    public void LoadFile_ErrorNamesFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"mblm-bad-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, Minimal.Replace("seq_lens: [4, 3]", "seq_lens: [4, -3]"));
        try
        {
            var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.LoadFile(path));
            StringAssert.Contains(e.Message, path);
            Assert.AreEqual("seq_lens[1]", e.Key);
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void Decoder_RefusesNonCausalBlocks_TheEncoderTakesThem()
    {
        var config = ConfigReader.Parse(Minimal.Replace("attn_num_heads: 2", "attn_num_heads: 2\n  block_type: transformerEncoder")).Model;
        Assert.AreEqual("transformerEncoder", config.Blocks[0].BlockType);
        var e = Assert.ThrowsExactly<ConfigException>(() => new Mblm.Model.MblmModel(config));
        Assert.AreEqual("block[0].block_type", e.Key);
        StringAssert.Contains(e.Message, "non-causal");
        using var encoder = new Mblm.Model.MblmEncoder(new MblmEncoderConfig { MaskTokenId = 255, Mblm = config });
        Assert.IsTrue(encoder.parameters().Any());
    }
}
