using System.Diagnostics;
using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.SearchSpace;

namespace Mblm.MLNet.Experiments;

/// <summary>One trial of a sweep.</summary>
/// <param name="Id">Trial number; trial 0 runs the base options unchanged.</param>
/// <param name="Options">The options the trial fitted with.</param>
/// <param name="ValidationBitsPerByte">Byte-weighted bits per byte on the validation data (lower is better).</param>
/// <param name="Duration">Fit plus evaluation time.</param>
public sealed record SweepTrial(int Id, MblmLanguageModelTrainer.Options Options, double ValidationBitsPerByte, TimeSpan Duration);

/// <summary>The outcome of a sweep: every trial and the best model (the others are disposed as soon as they lose).</summary>
public sealed class MblmSweepResult : IDisposable
{
    internal MblmSweepResult(IReadOnlyList<SweepTrial> trials, SweepTrial best, MblmLanguageModelTransformer bestModel)
    {
        Trials = trials;
        Best = best;
        BestModel = bestModel;
    }

    /// <summary>All trials, in order.</summary>
    public IReadOnlyList<SweepTrial> Trials { get; }
    /// <summary>The trial with the lowest validation bits per byte.</summary>
    public SweepTrial Best { get; }
    /// <summary>The best trial's fitted model (owned by this result).</summary>
    public MblmLanguageModelTransformer BestModel { get; }

    /// <summary>Disposes the best model.</summary>
    public void Dispose() => BestModel.Dispose();
}

/// <summary>
/// Random search over the language model's options, AutoML-style without the AutoML package: trial 0 runs the base options
/// (AutoML's default-value start); later trials draw every option that carries a <c>[Range]</c> (uniform, or log-uniform with
/// <c>logBase</c>) or <c>[Choice]</c> attribute from its range, seeded. Each trial is fitted and scored with
/// <see cref="MblmCatalog.Evaluate"/> on the validation data.
/// </summary>
internal static class MblmSweep
{
    public static MblmSweepResult Run(MblmCatalog catalog, IDataView train, IDataView validation, MblmLanguageModelTrainer.Options baseOptions,
        int maxTrials, int seed, TimeSpan? budget, IProgress<SweepTrial>? progress, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(validation);
        ArgumentNullException.ThrowIfNull(baseOptions);
        if (maxTrials < 1) throw new ArgumentOutOfRangeException(nameof(maxTrials), maxTrials, "must be at least 1");
        var rng = new Random(seed);
        var clock = Stopwatch.StartNew();
        var trials = new List<SweepTrial>();
        SweepTrial? best = null;
        MblmLanguageModelTransformer? bestModel = null;
        try
        {
            for (int id = 0; id < maxTrials && (budget is null || clock.Elapsed < budget); id++)
            {
                var options = id == 0 ? baseOptions : Sample(baseOptions, rng);
                var started = clock.Elapsed;
                var estimator = catalog.LanguageModel(options);
                estimator.Cancellation = cancellationToken; // checked as the trial's Fit starts, and at every step
                var model = estimator.Fit(train);
                double bpb = catalog.Evaluate(model.Transform(validation), options.InputColumnName, options.BitsPerByteColumnName).BitsPerByte;
                var trial = new SweepTrial(id, model.Options, bpb, clock.Elapsed - started);
                trials.Add(trial);
                progress?.Report(trial);
                if (best is null || bpb < best.ValidationBitsPerByte)
                {
                    bestModel?.Dispose();
                    (best, bestModel) = (trial, model);
                }
                else model.Dispose();
            }
            return new MblmSweepResult(trials, best!, bestModel!);
        }
        catch
        {
            bestModel?.Dispose();
            throw;
        }
    }

    /// <summary>The base options with every attributed option drawn from its search space.</summary>
    internal static MblmLanguageModelTrainer.Options Sample(MblmLanguageModelTrainer.Options baseOptions, Random rng)
    {
        var options = baseOptions with { };
        foreach (var property in typeof(MblmLanguageModelTrainer.Options).GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetCustomAttribute<RangeAttribute>() is { } range)
            {
                double min = Convert.ToDouble(range.Min), max = Convert.ToDouble(range.Max), u = rng.NextDouble();
                double x = range.LogBase ? Math.Exp(Math.Log(min) + u * (Math.Log(max) - Math.Log(min))) : min + u * (max - min);
                object value = property.PropertyType == typeof(int) ? (object)(int)Math.Round(x) : x;
                property.SetValue(options, value);
            }
            else if (property.GetCustomAttribute<ChoiceAttribute>() is { } choice)
            {
                property.SetValue(options, Convert.ChangeType(choice.Candidates[rng.Next(choice.Candidates.Length)], property.PropertyType));
            }
        }
        return options;
    }
}
