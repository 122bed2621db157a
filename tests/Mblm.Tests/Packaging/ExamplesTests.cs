namespace Mblm.Tests;

/// <summary>
/// The examples run end to end at a tiny size, as a user would start them (their own process), so that they cannot rot:
/// each must exit 0 and print its result lines.
/// </summary>
[TestClass]
public sealed class ExamplesTests
{
    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public void QuickStart_TrainsEvaluatesSavesReloadsAndGenerates()
    {
        string outDir = Path.Combine(Path.GetTempPath(), $"mblm-qs-{Guid.NewGuid():N}");
        try
        {
            var (code, output) = RunExample("QuickStart", $"--max-steps 3 --bytes 12 --out {outDir}");
            Assert.AreEqual(0, code, output);
            StringAssert.Contains(output, "trained 3 steps");
            StringAssert.Contains(output, "bits per byte");
            Assert.IsTrue(File.Exists(Path.Combine(outDir, "model.zip")), output);
        }
        finally { if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true); }
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public void Vqa_ComparesModelsPerQuestionFamily()
    {
        var (code, output) = RunExample("Vqa", "--scenes 16 --test-scenes 6 --questions 2 --epochs 1 --skip jpeg,transfer");
        Assert.AreEqual(0, code, output);
        StringAssert.Contains(output, "MBLM, pixels: micro accuracy");
        StringAssert.Contains(output, "majority answer per family");
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public void TextClassification_FileFragments_FromScratchAndFromTheBaseModel()
    {
        var (code, output) = RunExample("TextClassification", "--fragments --fragment-bytes 256 --fragment-rows 160 --models sdca,mblm --epochs 1 --pretrained mblm-base");
        Assert.AreEqual(0, code, output);
        StringAssert.Contains(output, "| fragment kind, 256 B, ");
        foreach (string model in new[] { "| byte histograms + SdcaMaximumEntropy |", "| MBLM text classifier (bytes) |", "| MBLM text classifier (bytes), from mblm-base |" })
            StringAssert.Contains(output, model);
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public void CustomBlock_UsesAPluginBlockThroughAPipeline()
    {
        string outDir = Path.Combine(Path.GetTempPath(), $"mblm-cb-{Guid.NewGuid():N}");
        try
        {
            var (code, output) = RunExample("CustomBlock", $"--max-steps 3 --out {outDir}");
            Assert.AreEqual(0, code, output);
            StringAssert.Contains(output, "config: lstm");
            StringAssert.Contains(output, "reloaded from");
        }
        finally { if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true); }
    }

    // Runs examples/<name> from its build output (built first when the solution build did not include it).
    private static (int Code, string Output) RunExample(string name, string arguments)
    {
        string configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Parent!.Name; // bin/<Configuration>/net10.0/
        string project = Path.Combine(TestData.RepoRoot, "examples", name);
        string dll = Path.Combine(project, "bin", configuration, "net10.0", name + ".dll");
        if (!File.Exists(dll))
        {
            var (buildCode, buildOutput) = ConsumerProjectTests.Run("dotnet", $"build \"{project}\" -c {configuration}", TestData.RepoRoot);
            Assert.AreEqual(0, buildCode, buildOutput);
        }
        return ConsumerProjectTests.Run("dotnet", $"\"{dll}\" {arguments}", TestData.RepoRoot);
    }
}
