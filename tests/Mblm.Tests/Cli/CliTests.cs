using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Mblm.Cli;
using Mblm.Training;

namespace Mblm.Tests;

/// <summary>The <c>mblm</c> tool, run in-process.</summary>
[TestClass]
public sealed class CliTests
{
    internal static (int Code, string Out, string Err) Mblm(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>
    /// The tool in a fresh process (<c>dotnet APPDIR/Mblm.Cli.dll args</c>), for what is process-wide: libtorch loading,
    /// allocator settings, loading a saved file from nothing. <paramref name="environment"/> sets variables; a null value
    /// removes one. Fails the test after 120 s.
    /// </summary>
    internal static (int Code, string Out, string Err) MblmProcess(string appDir, IReadOnlyDictionary<string, string?> environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(appDir, "Mblm.Cli.dll"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in environment)
            if (value is null) psi.Environment.Remove(name);
            else psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        if (!p.WaitForExit(120_000)) { p.Kill(true); Assert.Fail($"mblm {string.Join(' ', args)} did not finish in 120 s"); }
        return (p.ExitCode, stdout.Result, stderr);
    }

    private static string LastLine(string text) => text.TrimEnd().Split('\n').Last();

    [TestMethod]
    [DataRow("v1_t2")]
    [DataRow("v2_t3")]
    [DataRow("v3_s2")]
    public void Forward_ReproducesGoldenCase(string caseName)
    {
        string dir = TestData.Golden(caseName);
        string logitsOut = Path.Combine(Path.GetTempPath(), $"mblm-cli-{Guid.NewGuid():N}.bin");
        try
        {
            var (code, output, err) = Mblm("forward", "--config", Path.Combine(dir, "config.json"), "--weights", Path.Combine(dir, "weights.safetensors"),
                "--input", Path.Combine(dir, "input.json"), "--logits-out", logitsOut, "--device", "cpu");
            Assert.AreEqual(0, code, err);
            using var result = JsonDocument.Parse(LastLine(output));
            using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
            double loss = result.RootElement.GetProperty("loss").GetDouble();
            double want = expected.RootElement.GetProperty("loss").GetDouble();
            Assert.IsTrue(Math.Abs(loss - want) <= 1e-5 * want, $"loss {loss} vs {want}");
            // Round-trip exact: the printed text parses back to the float32 the model computed.
            string printed = result.RootElement.GetProperty("loss").GetRawText();
            Assert.AreEqual(printed, float.Parse(printed, CultureInfo.InvariantCulture).ToString("R", CultureInfo.InvariantCulture));
            CollectionAssert.AreEqual(expected.RootElement.GetProperty("logits_shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
                result.RootElement.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray());
            var mine = File.ReadAllBytes(logitsOut);
            var reference = File.ReadAllBytes(Path.Combine(dir, "logits.bin"));
            Assert.AreEqual(reference.Length, mine.Length, "logits file size");
            double maxDiff = 0;
            for (int i = 0; i < mine.Length; i += 4)
                maxDiff = Math.Max(maxDiff, Math.Abs(BitConverter.ToSingle(mine, i) - BitConverter.ToSingle(reference, i)));
            Assert.IsTrue(maxDiff <= 1e-4, $"logits differ by {maxDiff}");
        }
        finally { File.Delete(logitsOut); }
    }

    [TestMethod]
    [DataRow("pg19_30bb_360m_1d_t.yaml", 361_451_776L)]
    [DataRow("pg19_30bb_360m_2d_ss.yaml", 360_850_000L)]
    [DataRow("pg19_30bb_360m_2d_st.yaml", 358_900_000L)]
    [DataRow("pg19_200bb_360m_3d_stt.yaml", 362_870_000L)]
    [DataRow("clevr_7mi_360m_1d_s_ft.yaml", 356_980_000L)]
    public void Info_ReportsReferenceParameterCounts(string file, long approx)
    {
        var (code, output, err) = Mblm("info", "--config", TestData.ReferenceConfig(file));
        Assert.AreEqual(0, code, err);
        using var json = JsonDocument.Parse(LastLine(output));
        long count = json.RootElement.GetProperty("parameters").GetInt64();
        Assert.AreEqual(approx / 10_000, (count + 5_000) / 10_000, $"{count:N0} parameters");
        StringAssert.Contains(output, "stage 0");
    }

    [TestMethod]
    public void Info_WorksOnShippedExampleConfigs()
    {
        foreach (string file in Directory.GetFiles(Path.Combine(TestData.RepoRoot, "examples", "configs")))
        {
            var (code, output, err) = Mblm("info", "--config", file);
            Assert.AreEqual(0, code, $"{file}: {err}");
            StringAssert.Contains(output, "total:");
        }
    }

    [TestMethod]
    public void UsageErrors_NameTheFlag()
    {
        // Exit codes: 1 usage errors, 2 invalid files or data.
        var (code, _, err) = Mblm("forward", "--config", "x.yaml");
        Assert.AreEqual(1, code);
        StringAssert.Contains(err, "--weights is required");
        (code, _, err) = Mblm("info", "--config", "x.yaml", "--bogus", "1");
        Assert.AreEqual(1, code);
        StringAssert.Contains(err, "--bogus");
        (code, _, err) = Mblm("info", "--config", "/nonexistent/config.yaml");
        Assert.AreEqual(2, code);
        StringAssert.Contains(err, "/nonexistent/config.yaml");
        (code, _, err) = Mblm("frobnicate");
        Assert.AreEqual(1, code);
        StringAssert.Contains(err, "unknown command 'frobnicate'");
    }

    [TestMethod]
    public void TrainThenEvalThenResume_OnRepositoryText()
    {
        string outDir = Path.Combine(Path.GetTempPath(), $"mblm-cli-train-{Guid.NewGuid():N}");
        string config = Path.Combine(TestData.RepoRoot, "examples", "configs", "tiny-2d-st.json");
        string data = Path.Combine(TestData.RepoRoot, "README.md");
        try
        {
            var (code, output, err) = Mblm("train", "--config", config, "--data", data, "--val-fraction", "0.2", "--steps", "6", "--batch", "2",
                "--lr", "2e-3", "--out", outDir, "--checkpoint-every", "3", "--device", "cpu");
            Assert.AreEqual(0, code, err);
            StringAssert.Contains(err, "step 6/6");
            using var trained = JsonDocument.Parse(LastLine(output));
            Assert.AreEqual(6, trained.RootElement.GetProperty("steps").GetInt64());
            Assert.IsTrue(Directory.Exists(Path.Combine(outDir, "checkpoints", "step-00000003")));
            Assert.IsTrue(Directory.Exists(Path.Combine(outDir, "checkpoints", "step-00000006")));

            (code, output, err) = Mblm("eval", "--config", config, "--weights", Path.Combine(outDir, "weights.safetensors"), "--data", data);
            Assert.AreEqual(0, code, err);
            using var eval = JsonDocument.Parse(LastLine(output));
            Assert.AreEqual(new FileInfo(data).Length, eval.RootElement.GetProperty("bytes").GetInt64(), "every byte of the file is scored once");
            double bpb = eval.RootElement.GetProperty("bits_per_byte").GetDouble();
            Assert.AreEqual(eval.RootElement.GetProperty("loss").GetDouble() * 1.4426950408889634, bpb, 1e-9);
            Assert.IsTrue(bpb is > 0 and < 8.1, $"bits per byte {bpb}");

            // --resume with nothing left to do continues from the newest complete checkpoint (step 6) and stops there.
            // (The same run: the settings that shape it — here --lr — must match the checkpoint's.)
            (code, _, err) = Mblm("train", "--config", config, "--data", data, "--val-fraction", "0.2", "--steps", "6", "--batch", "2",
                "--lr", "2e-3", "--out", outDir, "--resume");
            Assert.AreEqual(0, code, err);
            StringAssert.Contains(err, "resumed from step 6");
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, true);
        }
    }

    [TestMethod]
    public void Train_InterruptedByCtrlC_StopsAfterAStep_WithACheckpoint_AndResumes()
    {
        string outDir = Path.Combine(Path.GetTempPath(), $"mblm-cli-int-{Guid.NewGuid():N}");
        string config = Path.Combine(TestData.RepoRoot, "examples", "configs", "tiny-2d-st.json");
        string data = Path.Combine(TestData.RepoRoot, "README.md");
        string[] train = ["train", "--config", config, "--data", data, "--steps", "30", "--batch", "2", "--out", outDir, "--checkpoint-every", "1000"];
        try
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Mblm.Cli.dll"));
            foreach (string a in train) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = new System.Text.StringBuilder();
            var stepped = new ManualResetEventSlim();
            p.ErrorDataReceived += (_, e) => { if (e.Data is null) return; lock (stderr) stderr.AppendLine(e.Data); if (e.Data.Contains("step ")) stepped.Set(); };
            p.BeginErrorReadLine();
            // The progress line is written with carriage returns: wait for the first step, then send SIGINT as Ctrl+C does.
            Assert.IsTrue(stepped.Wait(60_000) || p.HasExited, "no progress in 60 s: " + stderr);
            using (var kill = Process.Start("kill", [InterruptSignal(), p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
            if (!p.WaitForExit(60_000)) { p.Kill(true); Assert.Fail("mblm train did not stop within 60 s of Ctrl+C: " + stderr); }
            p.WaitForExit();
            string err; lock (stderr) err = stderr.ToString();
            Assert.AreEqual(ExitCodes.Interrupted, p.ExitCode, err + stdout.Result);
            StringAssert.Contains(err, InterruptSignal() == "-INT" ? "Ctrl+C: stopping after the current step" : "SIGTERM: stopping after the current step");
            StringAssert.Contains(err, "--resume to continue");
            string newest = CheckpointStore.Newest(outDir) ?? throw new AssertFailedException("no checkpoint after Ctrl+C: " + err);
            long step = CheckpointStore.StepOf(newest)!.Value;
            Assert.IsTrue(step >= 1, newest);
            StringAssert.Contains(err, $"interrupted at step {step}");

            Assert.IsTrue(step < 30, "stopped before the end");
            // The same command with --resume continues from that step to the end.
            var (code, _, err2) = Mblm([.. train, "--resume"]);
            Assert.AreEqual(0, code, err2);
            StringAssert.Contains(err2, $"resumed from step {step}");
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, true);
        }
    }

    /// <summary>
    /// Ctrl+C's signal, SIGINT; but when this test process has SIGINT ignored (it runs as a background job of a
    /// non-interactive shell, e.g. <c>bash .ci/run &amp;</c>), its children inherit that and no SIGINT can reach them,
    /// so SIGTERM is sent: the CLI's one handler serves both.
    /// </summary>
    private static string InterruptSignal()
    {
        string? ignored = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        ulong mask = ignored is null ? 0 : ulong.Parse(ignored["SigIgn:".Length..].Trim(), System.Globalization.NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        return (mask & (1UL << (2 - 1))) != 0 ? "-TERM" : "-INT";
    }

    [TestMethod]
    public void Generate_InterruptedByCtrlC_KeepsWhatItGenerated_AndExits130()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-cli-gen-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        string config = Path.Combine(TestData.RepoRoot, "examples", "configs", "tiny-2d-st.json");
        string weights = Path.Combine(dir, "w.safetensors"), ids = Path.Combine(dir, "ids.json");
        try
        {
            using (var model = TestData.RandomModel(global::Mblm.Config.ConfigReader.LoadModel(config), seed: 3)) global::Mblm.Weights.ModelWeights.Save(model, weights);
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Mblm.Cli.dll"));
            foreach (string a in new[] { "generate", "--config", config, "--weights", weights, "--prompt", "hello", "--max-bytes", "100000000", "--ids-out", ids })
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var first = new char[16];
            int got = p.StandardOutput.Read(first, 0, first.Length); // generation has started
            Assert.IsTrue(got > 0, "no output before the interrupt");
            var rest = p.StandardOutput.ReadToEndAsync();
            using (var kill = Process.Start("kill", [InterruptSignal(), p.Id.ToString(CultureInfo.InvariantCulture)])) kill.WaitForExit();
            if (!p.WaitForExit(60_000)) { p.Kill(true); Assert.Fail("mblm generate did not stop within 60 s of Ctrl+C"); }
            p.WaitForExit();
            string err = stderr.Result;
            Assert.AreEqual(ExitCodes.Interrupted, p.ExitCode, err);
            StringAssert.Contains(err, "mblm generate: interrupted after");
            using var written = JsonDocument.Parse(File.ReadAllBytes(ids));
            int count = written.RootElement.GetArrayLength();
            Assert.IsTrue(count > 0 && count < 100_000_000, $"{count} ids kept");
            StringAssert.Contains(err, $"interrupted after {count} tokens");
            Assert.IsTrue(got + rest.Result.Length > 0);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
