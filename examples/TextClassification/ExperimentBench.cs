using System.Diagnostics;
using Mblm.MLNet;
using Mblm.MLNet.Experiments;
using Mblm.MLNet.Text;
using Microsoft.ML;

namespace TextClassification;

/// <summary>
/// ASHA against random search at the same wall-clock budget, over the MBLM text classifier's options and model shape, on the
/// language-identification task: for each tuner and seed, the best validation macro-accuracy reached by a quarter, half
/// and all of the budget, trials started, and the held-out accuracy of the best model.
/// </summary>
internal static class ExperimentBench
{
    private sealed record Outcome(string Tuner, int Seed, double[] BestAt, int Trials, int Runs, double TestAccuracy, double TestMacro);

    public static void Run(TaskData task, TimeSpan budget, int[] seeds, long maxSteps, string work)
    {
        // Validation rows come from training files only (split by file, like train and test).
        var files = task.Train.Select(r => r.Source).Distinct().Order(StringComparer.Ordinal).ToArray();
        var validationFiles = files.Where((_, i) => i % 5 == 4).ToHashSet();
        var train = task.Train.Where(r => !validationFiles.Contains(r.Source)).ToArray();
        var validation = task.Train.Where(r => validationFiles.Contains(r.Source)).ToArray();
        Console.WriteLine($"experiment: {train.Length} training rows, {validation.Length} validation rows (other files), {task.Test.Length} held-out rows; " +
                          $"budget {budget.TotalSeconds:F0} s per run; seeds {string.Join(",", seeds)}");
        var space = MblmSearchSpace.Default(minLearningRate: 1e-3, maxLearningRate: 2e-2);
        Console.WriteLine($"search space: {space}");
        long minSteps = Math.Max(1, maxSteps / 9);
        var outcomes = new List<Outcome>();
        foreach (int seed in seeds)
            foreach (var tuner in new[] { MblmTuner.Asha, MblmTuner.Random })
            {
                var ml = new MLContext(seed);
                var keys = ml.Transforms.Conversion.MapValueToKey("Label", "Class").Fit(Runs.Load(ml, task.Train));
                var settings = new MblmExperimentSettings
                {
                    Directory = Path.Combine(work, $"experiment-{tuner}-{seed}"), Tuner = tuner, Seed = seed, MaxTrials = 1000, TimeBudget = budget,
                    MinSteps = minSteps, ReductionFactor = 3, Rungs = 3,
                };
                var baseOptions = new MblmTextClassifierTrainer.Options { MaxSteps = maxSteps, MaxEpochs = 1000 };
                var experiment = ml.Mblm().TextClassifierExperiment(keys.Transform(Runs.Load(ml, train)), keys.Transform(Runs.Load(ml, validation)),
                    baseOptions, space, settings);
                experiment.Monitor = new Printer(tuner.ToString());
                using var result = experiment.Run();
                double[] bestAt = new[] { 0.25, 0.5, 1.0 }.Select(f => result.Trials
                    .Where(t => t.Status == MblmTrialStatus.Completed && t.EndedAt <= f * budget.TotalSeconds).Select(t => t.Objective).DefaultIfEmpty(double.NaN).Max()).ToArray();
                double testAcc = double.NaN, testMacro = double.NaN;
                if (result.BestModel is { } best)
                {
                    var metrics = ml.MulticlassClassification.Evaluate(best.Transform(keys.Transform(Runs.Load(ml, task.Test))));
                    (testAcc, testMacro) = (metrics.MicroAccuracy, metrics.MacroAccuracy);
                }
                result.WriteCsv(Path.Combine(settings.Directory, "results.csv"));
                result.WritePlot(Path.Combine(settings.Directory, "results.svg"), $"{tuner}, seed {seed}: validation macro-accuracy");
                var outcome = new Outcome(tuner.ToString(), seed, bestAt, result.Trials.Select(t => t.Id).Distinct().Count(), result.Trials.Count, testAcc, testMacro);
                outcomes.Add(outcome);
                Console.WriteLine($"  {tuner} seed {seed}: best validation macro-accuracy at 1/4, 1/2, all of the budget: " +
                                  $"{string.Join(" / ", bestAt.Select(b => b.ToString("F3")))}; {outcome.Trials} trials ({outcome.Runs} runs); " +
                                  $"best model on held-out rows: accuracy {testAcc:F3}, macro {testMacro:F3}; {settings.Directory}/results.svg");
            }
        Console.WriteLine();
        Console.WriteLine($"| tuner | best val. macro-acc. at {budget.TotalSeconds / 4:F0} s | at {budget.TotalSeconds / 2:F0} s | " +
                          $"at {budget.TotalSeconds:F0} s | trials (runs) | held-out accuracy of the best |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (var g in outcomes.GroupBy(o => o.Tuner))
        {
            string Cell(Func<Outcome, double> f) => MeanSd(g.Select(f).ToArray());
            Console.WriteLine($"| {g.Key} | {Cell(o => o.BestAt[0])} | {Cell(o => o.BestAt[1])} | {Cell(o => o.BestAt[2])} | " +
                              $"{g.Average(o => o.Trials):F1} ({g.Average(o => o.Runs):F1}) | {Cell(o => o.TestAccuracy)} |");
        }
        Console.WriteLine($"(mean ± sd over seeds {string.Join(",", seeds)}; ASHA rungs {minSteps}/{minSteps * 3}/{minSteps * 9} steps, random search trials {maxSteps} steps)");
    }

    private static string MeanSd(double[] xs)
    {
        var v = xs.Where(double.IsFinite).ToArray();
        if (v.Length == 0) return "-";
        double mean = v.Average(), sd = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
        return $"{mean:F3} ± {sd:F3}" + (v.Length < xs.Length ? $" ({xs.Length - v.Length} none)" : "");
    }

    private sealed class Printer(string name) : IProgress<MblmExperimentEvent>
    {
        public void Report(MblmExperimentEvent e)
        {
            if (e.Kind is MblmExperimentEventKind.TrialStarted) return;
            var t = e.Trial;
            Console.WriteLine($"    {name} {e.Kind}: trial {t.Id} rung {t.Rung} ({t.Steps} steps) {t.Objective:F3} in {t.Seconds:F0} s at {t.EndedAt:F0} s" +
                              (t.Error is { } err ? $": {err}" : ""));
        }
    }
}
