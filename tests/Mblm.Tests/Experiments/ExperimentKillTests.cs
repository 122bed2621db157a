using System.Diagnostics;

namespace Mblm.Tests;

/// <summary>
/// An experiment killed with SIGKILL (kill -9) in the middle of a trial, in its own process, then started again: the
/// finished trial is kept, the interrupted one continues from its checkpoint, and the experiment completes. The program is
/// a .NET 10 file-based app written outside the repository, referencing the ML.NET layer's project.
/// </summary>
[TestClass]
public sealed class ExperimentKillTests
{
    private const string Program = """
        #:project {PROJECT}
        #:package libtorch-cpu-linux-x64@2.10.0
        #:property PublishAot=false
        using Mblm.Config;
        using Mblm.MLNet;
        using Mblm.MLNet.Experiments;
        using Mblm.MLNet.LanguageModel;
        using Microsoft.ML;

        var ml = new MLContext(seed: 1);
        var rows = Enumerable.Range(0, 40).Select(i => new Row { Text = $"Row {i}: the quick brown fox jumps over the lazy dog while {i % 7} cats sleep." }).ToList();
        var train = ml.Data.LoadFromEnumerable(rows.Take(32));
        var validation = ml.Data.LoadFromEnumerable(rows.Skip(32));
        var options = new MblmLanguageModelTrainer.Options { ModelConfig = MblmPresets.Tiny, MaxSteps = 40, MaxEpochs = 100000, BatchSize = 8 };
        // Trial 0 runs the base options (40 steps); trial 1 draws from the space: 400 steps, long enough to be killed.
        var space = new MblmSearchSpace().Range(nameof(MblmTrainingOptions.LearningRate), 1e-3, 1e-2, logScale: true).Choice(nameof(MblmTrainingOptions.MaxSteps), 400);
        var experiment = ml.Mblm().LanguageModelExperiment(train, validation, options, space,
            new MblmExperimentSettings { Directory = args[0], MaxTrials = 2, Seed = 4, CheckpointEvery = 10 });
        experiment.Monitor = new Printer();
        ml.Log += (_, e) => { if (e.Message.Contains("resumed from")) Console.WriteLine("LOG " + e.Message); };
        using var result = experiment.Run();
        Console.WriteLine($"DONE {result.Trials.Count} runs, best trial {result.Best!.Id}");

        public sealed class Row { public string Text { get; set; } = ""; }
        sealed class Printer : IProgress<MblmExperimentEvent>
        {
            public void Report(MblmExperimentEvent e) => Console.WriteLine($"EVENT {e.Kind} {e.Trial.Id}");
        }
        """;

    [TestMethod]
    [Timeout(900_000, CooperativeCancellation = true)]
    public void KilledMidTrial_ResumesWhereItWas()
    {
        string root = Path.Combine(Path.GetTempPath(), $"mblm-kill-{Guid.NewGuid():N}");
        string experiment = Path.Combine(root, "experiment"), app = Path.Combine(root, "app.cs");
        Directory.CreateDirectory(root);
        string? runfile = null; // the SDK's build folder of the app (it holds a copy of libtorch): removed afterwards
        try
        {
            File.WriteAllText(app, Program.Replace("{PROJECT}", Path.Combine(TestData.RepoRoot, "src", "Mblm.MLNet", "Mblm.MLNet.csproj")));
            var build = ConsumerProjectTests.Run("dotnet", $"build \"{app}\"", root);
            Assert.AreEqual(0, build.Code, build.Output);
            // The app's own process (`dotnet run` would start it as a child, which a kill of the launcher leaves running).
            var dll = System.Text.RegularExpressions.Regex.Match(build.Output, @"app\.cs -> (\S+\.dll)");
            Assert.IsTrue(dll.Success, build.Output);
            runfile = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(dll.Groups[1].Value)!, "..", ".."));

            // Trial 0: 40 steps; trial 1: 400 steps, killed as soon as its first checkpoint (step 10) exists.
            var psi = new ProcessStartInfo("dotnet", $"\"{dll.Groups[1].Value}\" \"{experiment}\"") { RedirectStandardOutput = true, RedirectStandardError = true };
            var firstOutput = new System.Text.StringBuilder();
            using (var p = Process.Start(psi)!)
            {
                p.OutputDataReceived += (_, e) => { lock (firstOutput) firstOutput.AppendLine(e.Data); };
                p.ErrorDataReceived += (_, e) => { lock (firstOutput) firstOutput.AppendLine(e.Data); };
                p.BeginOutputReadLine();
                p.BeginErrorReadLine();
                string trial1 = Path.Combine(experiment, "trial-0001", "checkpoints");
                var clock = Stopwatch.StartNew();
                while (!(Directory.Exists(trial1) && Directory.EnumerateDirectories(trial1, "step-*").Any()) && !p.HasExited && clock.Elapsed < TimeSpan.FromMinutes(5))
                    Thread.Sleep(20);
                Assert.IsFalse(p.HasExited, "the experiment ended before it could be killed:\n" + firstOutput);
                using (var kill = Process.Start("kill", ["-9", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
                p.WaitForExit();
                Assert.AreEqual(137, p.ExitCode, "killed by SIGKILL");
            }
            string first;
            lock (firstOutput) first = firstOutput.ToString();
            StringAssert.Contains(first, "EVENT TrialCompleted 0");
            StringAssert.Contains(first, "EVENT TrialStarted 1");
            Assert.IsFalse(first.Contains("EVENT TrialCompleted 1", StringComparison.Ordinal), first);

            var second = ConsumerProjectTests.Run("dotnet", $"\"{dll.Groups[1].Value}\" \"{experiment}\"", root);
            Assert.AreEqual(0, second.Code, second.Output);
            Assert.IsFalse(second.Output.Contains("EVENT TrialStarted 0", StringComparison.Ordinal), "the finished trial is not run again:\n" + second.Output);
            StringAssert.Contains(second.Output, "EVENT TrialStarted 1");
            StringAssert.Matches(second.Output, new System.Text.RegularExpressions.Regex(@"MBLM: resumed from the checkpoint of step [1-9]\d* in .*trial-0001"));
            StringAssert.Contains(second.Output, "EVENT TrialCompleted 1");
            StringAssert.Contains(second.Output, "DONE 2 runs");
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
            if (runfile is not null && Path.GetFileName(runfile).StartsWith("app-", StringComparison.Ordinal))
                try { Directory.Delete(runfile, recursive: true); } catch (IOException) { }
        }
    }
}
