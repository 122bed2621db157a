using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>
/// Checks that need what a fresh machine does not have, in opt-in categories that default.runsettings leaves out of a plain
/// <c>dotnet test</c> (.ci/run counts them): <c>gpu</c> needs CUDA, <c>reference-harness</c> needs the Python reference set
/// up by ../shared/reference-harness/setup.sh. Run them where those exist:
/// <c>dotnet test tests/Mblm.Tests --settings tests/Mblm.Tests/all.runsettings --filter TestCategory=gpu</c>. Without what
/// they need they fail, never skip.
/// </summary>
[TestClass]
public sealed class ExternalTests
{
    [TestMethod]
    [TestCategory("gpu")]
    [DataRow("v1_t2")]
    [DataRow("v3_s2")]
    public void GoldenForward_OnCuda_EqualsTheReference(string caseName)
    {
        Assert.IsTrue(cuda.is_available(), "CUDA is not available: this test needs a GPU (category gpu)");
        string dir = TestData.Golden(caseName);
        using var scope = NewDisposeScope();
        var model = new MblmModel(ConfigReader.LoadModel(Path.Combine(dir, "config.json")));
        ModelWeights.Load(model, Path.Combine(dir, "weights.safetensors"));
        model.to(CUDA);
        model.eval();
        var (ids, _) = TestData.ReadInput(Path.Combine(dir, "input.json"));
        using var noGrad = no_grad();
        var logits = model.forward(ids.to(CUDA)).cpu();
        var expected = tensor(ReadFloats(Path.Combine(dir, "logits.bin"))).view(logits.shape);
        double diff = (logits - expected).abs().max().item<float>();
        Assert.IsTrue(diff <= 1e-4, $"{caseName}: CUDA logits differ from the reference's by {diff}");
    }

    [TestMethod]
    [TestCategory("reference-harness")]
    [Timeout(900_000, CooperativeCancellation = true)]
    public void EncoderGoldenVectors_RegenerateIdentically_WithTheReference()
    {
        string harness = Path.Combine(TestData.SharedDir ?? Path.Combine(TestData.RepoRoot, "..", "shared"), "reference-harness", "run.sh");
        Assert.IsTrue(File.Exists(harness), $"the reference harness is not here ({harness}): this test needs it (category reference-harness)");
        string outDir = Path.Combine(Path.GetTempPath(), $"mblm-golden-{Guid.NewGuid():N}");
        try
        {
            var (code, output) = ConsumerProjectTests.Run("bash", $"\"{harness}\" tests/golden-gen/make_encoder_golden.py --out \"{outDir}\"", TestData.RepoRoot);
            Assert.AreEqual(0, code, output);
            string committed = Path.Combine(TestData.RepoRoot, "tests", "Mblm.Tests", "Golden");
            foreach (var file in Directory.GetFiles(outDir, "*", SearchOption.AllDirectories))
            {
                string rel = Path.GetRelativePath(outDir, file);
                if (rel.EndsWith(".json", StringComparison.Ordinal) && File.ReadAllText(file).Contains("\"generated\"")) continue; // timestamps
                CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(committed, rel)), File.ReadAllBytes(file), rel);
            }
        }
        finally { if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true); }
    }

    [TestMethod]
    [TestCategory("reference-harness")]
    [Timeout(900_000, CooperativeCancellation = true)]
    [DataRow(false)]
    [DataRow(true)]
    public void ExportedReferenceFolder_LoadsInTheReference_WithItsConfigClass_AndGivesTheSameLoss(bool resume)
    {
        string harness = Path.Combine(TestData.SharedDir ?? Path.Combine(TestData.RepoRoot, "..", "shared"), "reference-harness", "run.sh");
        Assert.IsTrue(File.Exists(harness), $"the reference harness is not here ({harness}): this test needs it (category reference-harness)");
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-export-ref-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            // Weights made in .NET (a seeded random model), exported with non-default training values.
            string config = PyTorchCheckpointTests.Fixture("config.json"), input = PyTorchCheckpointTests.Fixture("input.json");
            string weights = Path.Combine(dir, "dotnet.safetensors"), outDir = Path.Combine(dir, "export");
            using (var model = TestData.RandomModel(ConfigReader.LoadModel(config), seed: 7)) ModelWeights.Save(model, weights);
            string[] flags = ["export", "--config", config, "--weights", weights, "--out", outDir,
                "--batch-size", "3", "--learning-rate", "2e-5", "--input-seq-len", "20", "--dataset-id", "pg19"];
            var (code, _, err) = CliTests.Mblm(resume ? [.. flags, "--resume"] : flags);
            Assert.AreEqual(0, code, err);
            (code, string stdout, err) = CliTests.Mblm("forward", "--config", config, "--weights", weights, "--input", input);
            Assert.AreEqual(0, code, err);
            double dotnetLoss = System.Text.Json.JsonDocument.Parse(stdout.Trim().Split('\n').Last()).RootElement.GetProperty("loss").GetDouble();

            // The reference parses config.yaml with its TrainEntryConfig and loads model.pth with its load_model_state
            // (torch.load weights_only=True, strict), or through resume.checkpoint_file as its trainer does.
            string script = Path.Combine(TestData.RepoRoot, "scripts", "interop", "reference_loss.py");
            var (pyCode, output) = ConsumerProjectTests.Run("env", $"LOAD_GATE=0 bash \"{harness}\" \"{script}\" --dir \"{outDir}\" --input \"{input}\"", TestData.RepoRoot);
            Assert.AreEqual(0, pyCode, output);
            string line = output.Split('\n').Single(l => l.StartsWith("{\"loss\"", StringComparison.Ordinal));
            var reference = System.Text.Json.JsonDocument.Parse(line).RootElement;
            double refLoss = reference.GetProperty("loss").GetDouble();
            Assert.IsTrue(Math.Abs(refLoss - dotnetLoss) / Math.Abs(refLoss) <= 1e-5, $"the reference's loss {refLoss} vs .NET's {dotnetLoss}");
            Assert.AreEqual(20, reference.GetProperty("input_seq_len").GetInt32());
            Assert.AreEqual(3, reference.GetProperty("batch_size").GetInt32());
            Assert.AreEqual(2e-5, reference.GetProperty("learning_rate").GetDouble());
            if (!resume)
            {
                Assert.AreEqual(System.Text.Json.JsonValueKind.Null, reference.GetProperty("checkpoint_loss").ValueKind);
                Assert.IsTrue(reference.GetProperty("weights_only").GetBoolean(), "the export must load with weights_only=True");
            }
            else
            {
                // The reference's ResumeConfig accepts the section, and its trainer's log line can format the LOSS.
                Assert.AreEqual(Path.Combine(outDir, "model.pth"), reference.GetProperty("resume_checkpoint_file").GetString());
                Assert.AreEqual("Loaded model with loss inf from checkpoint", reference.GetProperty("resume_log").GetString());
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static float[] ReadFloats(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var floats = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, floats, 0, floats.Length * 4);
        return floats;
    }
}
