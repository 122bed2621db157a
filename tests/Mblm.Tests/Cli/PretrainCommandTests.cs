using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Mblm.Pretraining;
using Mblm.Training;

namespace Mblm.Tests;

/// <summary>
/// <c>mblm pretrain</c> end to end at CI size: a corpus manifest, a run killed with SIGKILL and resumed, a longer run that
/// extends the finished one from its decay start, and the model folder with its card.
/// </summary>
[TestClass]
public sealed class PretrainCommandTests
{
    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public void Pretrain_KilledResumedAndExtended_WritesTheModelFolder()
    {
        string root = Path.Combine(Path.GetTempPath(), $"mblm-pretrain-{Guid.NewGuid():N}");
        string outDir = Path.Combine(root, "run"), corpus = Path.Combine(root, "corpus.json");
        try
        {
            // The split hashes each file's path under its root: at 50 %, t1/t4 and b0/b2/b4 are held out, wherever root lies.
            string data = Path.Combine(root, "data");
            Directory.CreateDirectory(data);
            for (int i = 0; i < 6; i++)
            {
                File.WriteAllText(Path.Combine(data, $"t{i}.txt"), string.Concat(Enumerable.Repeat($"line {i}: the quick brown fox jumps over the lazy dog. ", 20)));
                File.WriteAllBytes(Path.Combine(data, $"b{i}.bin"), Enumerable.Range(0, 900).Select(j => (byte)(j * (i + 3))).ToArray());
            }
            var manifest = CorpusManifest.Build(
            [
                new CorpusKind("text", 2, [data], p => p.EndsWith(".txt", StringComparison.Ordinal)),
                new CorpusKind("binary", 1, [data], p => p.EndsWith(".bin", StringComparison.Ordinal)),
            ], new CorpusOptions { HeldOutPercent = 50 });
            Assert.AreEqual(2, manifest.Files.GroupBy(f => f.Kind).Count(g => g.Any(f => f.HeldOut) && g.Any(f => !f.HeldOut)), manifest.Summary());
            manifest.Save(corpus);
            string config = Path.Combine(TestData.RepoRoot, "examples", "configs", "tiny-2d-st.json");
            string Args(int steps, bool resume) =>
                $"pretrain --config \"{config}\" --corpus \"{corpus}\" --out \"{outDir}\" --steps {steps} --batch 2 --warmup-steps 5 --checkpoint-every 5 --eval-bytes-per-kind 2048" +
                (resume ? " --resume" : "");

            // 1. Killed (SIGKILL) as soon as its first checkpoint exists.
            using (var p = Start(Args(60, resume: false)))
            {
                string checkpoints = Path.Combine(outDir, "checkpoints");
                var clock = Stopwatch.StartNew();
                while (!(Directory.Exists(checkpoints) && Directory.EnumerateDirectories(checkpoints, "step-*").Any()) && !p.HasExited && clock.Elapsed < TimeSpan.FromMinutes(3))
                    Thread.Sleep(10);
                Assert.IsFalse(p.HasExited, "the run ended before it could be killed");
                using (var kill = Process.Start("kill", ["-9", p.Id.ToString(CultureInfo.InvariantCulture)])) kill.WaitForExit();
                p.WaitForExit();
                Assert.AreEqual(137, p.ExitCode);
            }
            Assert.IsFalse(Directory.Exists(Path.Combine(outDir, "model")), "no model folder from a killed run");

            // 2. The same command with --resume continues from a checkpoint and finishes.
            var (code, stdout, stderr) = Run(Args(60, resume: true));
            Assert.AreEqual(0, code, stderr);
            StringAssert.Matches(stderr, new System.Text.RegularExpressions.Regex(@"resumed from step [1-9]\d*"));
            using (var json = JsonDocument.Parse(stdout.Trim().Split('\n')[^1]))
            {
                Assert.AreEqual(60, json.RootElement.GetProperty("steps").GetInt32());
                var bpb = json.RootElement.GetProperty("held_out_bits_per_byte");
                foreach (var kind in new[] { "text", "binary" })
                    Assert.IsTrue(bpb.GetProperty(kind).GetDouble() is > 0 and < 16, stdout);
            }

            // 3. More steps extend the finished run from where its decay started (warm-up–stable–decay).
            (code, stdout, stderr) = Run(Args(120, resume: true));
            Assert.AreEqual(0, code, stderr);
            StringAssert.Contains(stderr, $"resumed from step {LearningRateSchedule.DecayStartOf(60, 0.2)}");
            StringAssert.Contains(stdout, "\"steps\":120");
            // The installed compressors on the same held-out files, at the model's context and on whole files.
            using (var json = JsonDocument.Parse(stdout.Trim().Split('\n')[^1]))
                foreach (var table in new[] { "compressors_at_equal_context", "compressors_on_whole_files" })
                    foreach (var compressor in new[] { "gzip -9", "bzip2 -9", "xz -9e", "zstd -19" })
                        Assert.IsTrue(json.RootElement.GetProperty(table).GetProperty("text").GetProperty(compressor).GetDouble() is > 0 and < 16, $"{table} {compressor}: {stdout}");

            string model = Path.Combine(outDir, "model");
            foreach (var f in new[] { "config.json", "model.safetensors", "README.md" }) Assert.IsTrue(File.Exists(Path.Combine(model, f)), f);
            string card = File.ReadAllText(Path.Combine(model, "README.md"));
            StringAssert.Contains(card, "120 optimiser steps");
            StringAssert.Contains(card, "| text | 2 |");
            StringAssert.Contains(card, "| kind | files | bytes | MBLM | gzip -9 | bzip2 -9 | xz -9e | zstd -19 | MBLM / best |");
            StringAssert.Contains(card, "at equal context");
            using var reloaded = TestData.RandomModel(global::Mblm.Config.ConfigReader.LoadModel(Path.Combine(model, "config.json")), seed: 9);
            global::Mblm.Weights.ModelWeights.Load(reloaded, Path.Combine(model, "model.safetensors"));
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }
    }

    private static Process Start(string arguments)
    {
        var psi = new ProcessStartInfo("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "Mblm.Cli.dll")}\" {arguments}")
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private static (int Code, string Stdout, string Stderr) Run(string arguments)
    {
        var psi = new ProcessStartInfo("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "Mblm.Cli.dll")}\" {arguments}")
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
