using System.Text.Json;
using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>
/// The MBLM encoder against golden vectors of the Python reference (tests/Mblm.Tests/Golden, made by
/// tests/golden-gen/make_encoder_golden.py): hidden states and logits ≤ 1e-4 abs, loss ≤ 1e-5 rel, gradient norms ≤ 1e-4 rel.
/// </summary>
[TestClass]
public sealed class EncoderGoldenTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>A case folder: copied next to the test assembly (csproj), else read from the source tree.</summary>
    internal static string CaseDir(string name)
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "Golden", name);
        if (Directory.Exists(beside)) return beside;
        string source = Path.Combine(TestData.RepoRoot, "tests", "Mblm.Tests", "Golden", name);
        if (!Directory.Exists(source)) Assert.Fail($"golden case {name} is missing (looked in {beside} and {source})");
        return source;
    }

    /// <summary>Reads <c>{"ids": [[…]], "mask": [[bool…]], "labels": [[…]]}</c>.</summary>
    internal static (Tensor Ids, Tensor Mask, Tensor Labels) ReadInput(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "input.json")));
        var root = doc.RootElement;
        long[][] Longs(string key) => root.GetProperty(key).EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();
        var ids = Longs("ids");
        var labels = Longs("labels");
        var mask = root.GetProperty("mask").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetBoolean()).ToArray()).ToArray();
        long b = ids.Length, l = ids[0].Length;
        return (tensor(ids.SelectMany(r => r).ToArray(), new[] { b, l }),
                tensor(mask.SelectMany(r => r).ToArray(), new[] { b, l }),
                tensor(labels.SelectMany(r => r).ToArray(), new[] { b, l }));
    }

    internal static MblmEncoder LoadCase(string dir)
    {
        var config = ConfigReader.LoadEncoder(Path.Combine(dir, "config.json"));
        var encoder = new MblmEncoder(config);
        ModelWeights.Load(encoder, Path.Combine(dir, "weights.safetensors"));
        encoder.eval();
        return encoder;
    }

    private static float[] ReadFloats(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }

    private static double MaxAbsDiff(Tensor mine, float[] reference)
    {
        var m = mine.contiguous().data<float>().ToArray();
        Assert.AreEqual(reference.Length, m.Length, "element count");
        return m.Zip(reference, (a, b) => Math.Abs((double)a - b)).Max();
    }

    [TestMethod]
    [DataRow("enc_t2")]
    [DataRow("enc_t3")]
    [DataRow("enc_mix")]
    public void EncoderGolden_MatchesReference(string caseName)
    {
        string dir = CaseDir(caseName);
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var exp = expected.RootElement;
        using var scope = NewDisposeScope();
        var encoder = LoadCase(dir);
        Assert.AreEqual(exp.GetProperty("mask_token_id").GetInt32(), encoder.MaskTokenId);
        var (ids, mask, labels) = ReadInput(dir);
        var labelsBefore = labels.clone();

        Tensor hidden, logits, loss;
        using (no_grad())
        {
            hidden = encoder.forward(ids);
            (loss, logits) = encoder.LossAndLogits(ids, mask, labels);
        }
        Assert.IsTrue(labels.eq(labelsBefore).all().item<bool>(), "the loss must not modify the labels");

        CollectionAssert.AreEqual(exp.GetProperty("hidden_shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(), hidden.shape, "hidden shape");
        CollectionAssert.AreEqual(exp.GetProperty("logits_shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(), logits.shape, "logits shape");
        double dHidden = MaxAbsDiff(hidden, ReadFloats(Path.Combine(dir, "hidden.bin")));
        double dLogits = MaxAbsDiff(logits, ReadFloats(Path.Combine(dir, "logits.bin")));
        double expLoss = exp.GetProperty("loss").GetDouble();
        double myLoss = loss.item<float>();
        double lossRel = Math.Abs(myLoss - expLoss) / Math.Abs(expLoss);

        // The non-causality probe: the last byte of row 0 changed, the first position's hidden state moves as in the reference.
        var probe = exp.GetProperty("noncausal_probe");
        var probeIds = ids.clone();
        probeIds[probe.GetProperty("row").GetInt32(), probe.GetProperty("position").GetInt32()] = tensor(probe.GetProperty("new_id").GetInt64());
        Tensor probeHidden;
        using (no_grad()) probeHidden = encoder.forward(probeIds);
        var probeRef = probe.GetProperty("hidden_pos0_first8").EnumerateArray().Select(x => (float)x.GetDouble()).ToArray();
        double dProbe = MaxAbsDiff(probeHidden[0, 0, ..8], probeRef);
        double change = (probeHidden[0, 0] - hidden[0, 0]).abs().max().item<float>();

        // Gradient norms: one backward in training mode (dropout 0 = same forward; enc_mix checkpoints its local stage).
        encoder.train();
        encoder.zero_grad();
        encoder.Loss(ids, mask, labels).backward();
        var parameters = encoder.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var gradNorms = exp.GetProperty("grad_norms");
        Assert.AreEqual(gradNorms.EnumerateObject().Count(), parameters.Count, "number of parameters with grad norms");
        double worstGrad = 0;
        string worstName = "";
        foreach (var entry in gradNorms.EnumerateObject())
        {
            Assert.IsTrue(parameters.ContainsKey(entry.Name), $"encoder lacks parameter {entry.Name}");
            var grad = parameters[entry.Name].grad;
            double norm = grad is null ? 0 : grad.to_type(float64).norm().item<double>();
            double want = entry.Value.GetDouble();
            double rel = Math.Abs(norm - want) / Math.Max(Math.Abs(want), 1e-9);
            if (rel > worstGrad) (worstGrad, worstName) = (rel, entry.Name);
        }
        encoder.eval();

        TestContext.WriteLine($"{caseName}: hidden max abs {dHidden:E2}, logits max abs {dLogits:E2}, loss {myLoss} vs {expLoss} (rel {lossRel:E2}), " +
                              $"grad norm worst rel {worstGrad:E2} ({worstName}), probe max abs {dProbe:E2} (change {change:E2})");
        Assert.IsTrue(dHidden <= 1e-4, $"hidden states max abs diff {dHidden:E3} > 1e-4");
        Assert.IsTrue(dLogits <= 1e-4, $"logits max abs diff {dLogits:E3} > 1e-4");
        Assert.IsTrue(lossRel <= 1e-5, $"loss {myLoss} vs reference {expLoss}");
        Assert.IsTrue(worstGrad <= 1e-4, $"grad norm of {worstName}: relative difference {worstGrad:E3} > 1e-4");
        Assert.IsTrue(dProbe <= 1e-4, $"probe hidden states max abs diff {dProbe:E3} > 1e-4");
        Assert.AreEqual(probe.GetProperty("hidden_pos0_max_abs_change").GetDouble(), change, 1e-4, "probe: change of the first position");

        var ambiguous = exp.GetProperty("argmax_ambiguous").EnumerateArray().Select(p => (p[0].GetInt32(), p[1].GetInt32())).ToHashSet();
        var argmax = logits.argmax(-1);
        int b = 0;
        foreach (var row in exp.GetProperty("argmax").EnumerateArray())
        {
            int t = 0;
            foreach (var a in row.EnumerateArray())
            {
                if (!ambiguous.Contains((b, t))) Assert.AreEqual(a.GetInt64(), argmax[b, t].item<long>(), $"argmax at [{b}, {t}]");
                t++;
            }
            b++;
        }
    }

    [TestMethod]
    [DataRow("enc_t2")]
    [DataRow("enc_t3")]
    [DataRow("enc_mix")]
    public void EncoderStateDict_EqualsReferenceNamesAndShapes(string caseName)
    {
        string dir = CaseDir(caseName);
        using var scope = NewDisposeScope();
        var encoder = new MblmEncoder(ConfigReader.LoadEncoder(Path.Combine(dir, "config.json")));
        var reference = SafeTensors.Load(Path.Combine(dir, "weights.safetensors"))
            .Select(kv => $"{kv.Key} ({string.Join(", ", kv.Value.shape)})").Order(StringComparer.Ordinal);
        var mine = encoder.state_dict().Select(kv => $"{kv.Key} ({string.Join(", ", kv.Value.shape)})").Order(StringComparer.Ordinal);
        Assert.AreEqual(string.Join("\n", reference), string.Join("\n", mine));
        Assert.AreEqual(encoder.Config.Mblm.CountParameters(), encoder.parameters().Sum(p => p.NumberOfElements), "parameter count from the config");
    }

    private static MblmEncoderConfig SmallEncoder(bool localCausal = false, int pad = 256, int mask = 257) => new MblmEncoderConfig
    {
        MaskTokenId = mask,
        Mblm = new MblmConfig
        {
            NumTokens = 258, PadTokenId = pad, HiddenDims = [16, 8], SeqLens = [4, 3], NumLayers = [1, 1],
            Blocks =
            [
                new TransformerEncoderBlockConfig { AttnHeadDims = 4, AttnNumHeads = 2, AttnUseRotEmbs = true, PosEmbType = PosEmbType.Fixed },
                localCausal
                    ? new TransformerBlockConfig { AttnHeadDims = 4, AttnNumHeads = 2, AttnUseRotEmbs = true, PosEmbType = PosEmbType.Fixed }
                    : new TransformerEncoderBlockConfig { AttnHeadDims = 4, AttnNumHeads = 2, AttnUseRotEmbs = true, PosEmbType = PosEmbType.Fixed },
            ],
        },
    };

    [TestMethod]
    public void EncoderStateDict_IsMblmNamesUnderMblmPrefix()
    {
        using var scope = NewDisposeScope();
        var config = SmallEncoder();
        var encoder = new MblmEncoder(config);
        var keys = encoder.state_dict().Keys.Order(StringComparer.Ordinal).ToArray();
        // The same hierarchy with causal blocks of the same shapes: a decoder the encoder's names must equal (prefixed).
        var causal = config.Mblm with
        {
            Blocks = config.Mblm.Blocks.Select(b => b is TransformerEncoderBlockConfig e
                ? new TransformerBlockConfig { PosEmbType = e.PosEmbType, AttnHeadDims = e.AttnHeadDims, AttnNumHeads = e.AttnNumHeads, AttnUseRotEmbs = e.AttnUseRotEmbs,
                    FfMultiplier = e.FfMultiplier }
                : b).ToArray(),
        };
        var decoderKeys = new MblmModel(causal).state_dict().Keys.Select(k => "mblm." + k).Order(StringComparer.Ordinal).ToArray();
        CollectionAssert.AreEqual(decoderKeys, keys);
        string[] stage0 =
        [
            "mblm.stage_models.0.layers.0.0.norm.g", "mblm.stage_models.0.layers.0.0.to_kv.weight", "mblm.stage_models.0.layers.0.0.to_out.weight",
            "mblm.stage_models.0.layers.0.0.to_q.weight", "mblm.stage_models.0.layers.0.1.0.g", "mblm.stage_models.0.layers.0.1.1.bias",
            "mblm.stage_models.0.layers.0.1.1.weight", "mblm.stage_models.0.layers.0.1.4.bias", "mblm.stage_models.0.layers.0.1.4.weight",
            "mblm.stage_models.0.norm.g", "mblm.stage_models.0.rotary_emb.inv_freq",
        ];
        CollectionAssert.AreEqual(stage0, keys.Where(k => k.StartsWith("mblm.stage_models.0.", StringComparison.Ordinal)).ToArray());
        CollectionAssert.Contains(keys, "mblm.start_tokens.0");
        CollectionAssert.Contains(keys, "mblm.to_logits.weight");
        Assert.IsFalse(keys.Any(k => !k.StartsWith("mblm.", StringComparison.Ordinal)), "every name lies under mblm.");
    }

    [TestMethod]
    public void Encoder_IsNotCausal()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var encoder = new MblmEncoder(SmallEncoder());
        encoder.eval();
        var ids = randint(0, 256, new long[] { 1, 12 });
        using var noGrad = no_grad();
        var h = encoder.forward(ids);

        // A later byte in the same local patch (bytes 0..2) changes byte 0's state: the local stage is bidirectional.
        var sameRow = ids.clone();
        sameRow[0, 2] = tensor((sameRow[0, 2].item<long>() + 1) % 256);
        Assert.IsTrue((encoder.forward(sameRow)[0, 0] - h[0, 0]).abs().max().item<float>() > 1e-5, "byte 2 must influence byte 0");

        // The last byte (in the last patch) changes the first patch's states: the global stage is bidirectional too.
        var lastByte = ids.clone();
        lastByte[0, 11] = tensor((lastByte[0, 11].item<long>() + 1) % 256);
        var diff = (encoder.forward(lastByte) - h).abs().amax(-1)[0];
        for (int t = 0; t < 11; t++) Assert.IsTrue(diff[t].item<float>() > 1e-6, $"the last byte must influence byte {t}");

        // Contrast: the same hierarchy with causal transformer stages leaves earlier states alone.
        manual_seed(5);
        var decoder = new MblmModel(SmallEncoder().Mblm with
        {
            Blocks = [TestData.T(heads: 2, headDim: 4), TestData.T(heads: 2, headDim: 4)],
        });
        decoder.eval();
        var hd = decoder.HiddenStates(ids).Hidden;
        Assert.AreEqual(0f, (decoder.HiddenStates(sameRow).Hidden[0, ..2] - hd[0, ..2]).abs().max().item<float>(), 0f, "causal: bytes 0, 1 ignore byte 2");
        Assert.AreEqual(0f, (decoder.HiddenStates(lastByte).Hidden[0, ..11] - hd[0, ..11]).abs().max().item<float>(), 0f, "causal: bytes 0..10 ignore byte 11");

        // A non-causal global stage over a causal local stage: the last patch still reaches byte 0 through the global stage.
        manual_seed(5);
        var mixed = new MblmEncoder(SmallEncoder(localCausal: true));
        mixed.eval();
        Assert.IsTrue((mixed.forward(lastByte)[0, 0] - mixed.forward(ids)[0, 0]).abs().max().item<float>() > 1e-6, "encoder global stage: byte 0 sees the last patch");
    }

    [TestMethod]
    public void EncoderStage_HasNoIncrementalForm()
    {
        using var scope = NewDisposeScope();
        var stage = new TransformerEncoderBlockConfig { AttnHeadDims = 4, AttnNumHeads = 2, AttnUseRotEmbs = true }.CreateStage(8, 1);
        Assert.IsFalse(((TransformerStage)stage).IsCausal);
        Assert.ThrowsExactly<NotSupportedException>(() => stage.NewCache(1, 4, CPU));
        Assert.ThrowsExactly<NotSupportedException>(() => stage.Step(zeros(1, 8), null!));
    }

    [TestMethod]
    public void EncoderLoss_CountsMaskedNonMaskLabelsOnly()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var logits = randn(1, 5, 258);
        var labels = tensor(new long[] { 10, 256, 257, 30, 40 }).view(1, 5);
        var mask = tensor(new[] { true, true, true, false, true }).view(1, 5);
        var ce = nn.functional.cross_entropy(logits[0], labels[0].clamp_max(255), reduction: nn.Reduction.None);
        // counted: t=0 (label 10), t=1 (the pad label counts), t=4; t=2 has label == mask id, t=3 is not masked
        double want = (ce[0].item<float>() + nn.functional.cross_entropy(logits[0, 1].unsqueeze(0), tensor(new long[] { 256 })).item<float>() + ce[4].item<float>()) / 3;
        Assert.AreEqual(want, MblmEncoder.MaskedLoss(logits, mask, labels, 257).item<float>(), 1e-5);

        // Nothing counted: NaN, as in the reference.
        Assert.IsTrue(float.IsNaN(MblmEncoder.MaskedLoss(logits, zeros_like(mask), labels, 257).item<float>()));
        // The mask must be bool (the reference asserts it).
        Assert.ThrowsExactly<ArgumentException>(() => MblmEncoder.MaskedLoss(logits, mask.to_type(float32), labels, 257));
        // A counted label outside the vocabulary is named.
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => MblmEncoder.MaskedLoss(logits, mask, tensor(new long[] { 10, 300, 257, 30, 40 }).view(1, 5), 257));
    }

    [TestMethod]
    public void MaskBytes_NeverMasksPadding()
    {
        using var scope = NewDisposeScope();
        var encoder = new MblmEncoder(SmallEncoder());
        var ids = cat(new[] { randint(0, 256, new long[] { 2, 20 }), full(new long[] { 2, 4 }, 256L) }, 1);
        using var g = new Generator(7);
        var (masked, mask) = encoder.MaskBytes(ids, 0.5, g);
        Assert.AreEqual(ScalarType.Bool, mask.dtype);
        Assert.IsFalse(mask[.., 20..].any().item<bool>(), "padding is never masked");
        Assert.IsTrue(mask.any().item<bool>());
        Assert.IsTrue(masked.masked_select(mask).eq(257).all().item<bool>());
        Assert.IsTrue(masked.masked_select(mask.logical_not()).eq(ids.masked_select(mask.logical_not())).all().item<bool>());
    }

    [TestMethod]
    public void EncoderConfig_RoundTripsAndReadsReferenceLayouts()
    {
        string json = File.ReadAllText(Path.Combine(CaseDir("enc_mix"), "config.json"));
        var config = ConfigReader.ParseEncoder(json);
        Assert.AreEqual(257, config.MaskTokenId);
        Assert.IsInstanceOfType<TransformerEncoderBlockConfig>(config.Mblm.Blocks[0]);
        Assert.IsInstanceOfType<TransformerBlockConfig>(config.Mblm.Blocks[1]);
        Assert.AreEqual(PosEmbType.Rope, config.Mblm.Blocks[0].PosEmbType);
        string written = ConfigWriter.ToJson(config);
        Assert.AreEqual(written, ConfigWriter.ToJson(ConfigReader.ParseEncoder(written)), "write → read → write is stable");

        // A plain model config may use transformerEncoder stages (the reference accepts them in MBLM too).
        var model = ConfigReader.Parse(ConfigWriter.ToJson(config.Mblm)).Model;
        Assert.AreEqual("transformerEncoder", model.Blocks[0].BlockType);

        // Reference masked-training layout: params.{mask_token_id, mblm_config, input_seq_len}, train.masking_proba.
        string training = $$"""
            params:
              input_seq_len: 24
              mask_token_id: 257
              mblm_config: {{json.Replace("\n", " ").Split("\"mblm_config\":")[1].TrimEnd().TrimEnd('}')}}
            train:
              masking_proba: 0.15
              batch_size: 4
            io: {}
            """;
        var file = ConfigReader.ParseEncoderFile(training);
        Assert.AreEqual(24L, file.InputSeqLen);
        Assert.AreEqual(0.15, file.MaskingProba);
        Assert.AreEqual(written, ConfigWriter.ToJson(file.Encoder));

        var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.ParseEncoder(json.Replace("\"attn_num_heads\": 2", "\"attn_num_heads\": 0")));
        Assert.AreEqual("mblm_config.block[0].attn_num_heads", e.Key);
        e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.ParseEncoder(json.Replace("\"mask_token_id\": 257,", "")));
        Assert.AreEqual("mask_token_id", e.Key);
    }
}
