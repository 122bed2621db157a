using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mblm.Training;
using Microsoft.ML;

namespace Mblm.MLNet.Experiments;

/// <summary>How an experiment picks its trials.</summary>
public enum MblmTuner
{
    /// <summary>Trial 0 runs the base options; later trials draw every dimension at random (seeded per trial).</summary>
    Random,
    /// <summary>Every point of the grid in order (<see cref="MblmExperimentSettings.GridPointsPerRange"/> values per range).</summary>
    Grid,
    /// <summary>
    /// Asynchronous successive halving (ASHA): new trials train for the smallest budget (rung 0); whenever the best
    /// 1/<see cref="MblmExperimentSettings.ReductionFactor"/> of a rung includes a trial not yet promoted, that trial is
    /// promoted: it resumes from its own checkpoint and trains to the next rung's steps. Trials use the warm-up–stable–decay
    /// schedule with a fixed warm-up, so a promoted trial continues from where its decay started.
    /// </summary>
    Asha,
}

/// <summary>The settings of an experiment (immutable).</summary>
public sealed record MblmExperimentSettings
{
    /// <summary>
    /// The experiment's folder: <c>experiment.json</c> (what is searched, to refuse resuming another experiment),
    /// <c>trials.jsonl</c> (one line per trial event, appended and flushed) and one checkpoint folder per trial
    /// (<c>trial-0001/</c>). Running the same experiment again on the same folder resumes it: finished trials are read back,
    /// the interrupted trial resumes from its checkpoint. Required.
    /// </summary>
    public required string Directory { get; init; }
    /// <summary>The tuner (default: random search).</summary>
    public MblmTuner Tuner { get; init; } = MblmTuner.Random;
    /// <summary>Most trials started (each ASHA promotion continues its trial; it is not a new one).</summary>
    public int MaxTrials { get; init; } = 20;
    /// <summary>Wall-clock budget; the running trial is stopped (and checkpointed) when it is spent. Null = none.</summary>
    public TimeSpan? TimeBudget { get; init; }
    /// <summary>Seed of the tuner and of every trial's fit (trial i's seed derives from it).</summary>
    public int Seed { get; init; }
    /// <summary>Grid tuner: values per range dimension.</summary>
    public int GridPointsPerRange { get; init; } = 3;
    /// <summary>ASHA: optimiser steps of rung 0.</summary>
    public long MinSteps { get; init; } = 50;
    /// <summary>ASHA: the factor between rungs' steps, and the fraction (1/factor) of a rung that is promoted.</summary>
    public int ReductionFactor { get; init; } = 3;
    /// <summary>ASHA: rungs (the top rung trains for MinSteps × factor^(rungs − 1) steps).</summary>
    public int Rungs { get; init; } = 3;
    /// <summary>Checkpoint every this many steps inside a trial (0 = the estimator's default, every epoch).</summary>
    public long CheckpointEvery { get; init; }

    /// <summary>Steps of rung <paramref name="rung"/> (ASHA).</summary>
    public long StepsAt(int rung) => checked(MinSteps * (long)Math.Pow(ReductionFactor, rung));

    internal void Check()
    {
        if (string.IsNullOrWhiteSpace(Directory)) throw new ArgumentException("MblmExperimentSettings.Directory must name a folder", nameof(Directory));
        if (MaxTrials < 1) throw new ArgumentOutOfRangeException(nameof(MaxTrials), $"MblmExperimentSettings.MaxTrials must be at least 1 (got {MaxTrials})");
        if (TimeBudget is { } b && b <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(TimeBudget), $"MblmExperimentSettings.TimeBudget must be positive (got {b})");
        if (GridPointsPerRange < 1) throw new ArgumentOutOfRangeException(nameof(GridPointsPerRange), "MblmExperimentSettings.GridPointsPerRange must be at least 1");
        if (MinSteps < 1) throw new ArgumentOutOfRangeException(nameof(MinSteps), "MblmExperimentSettings.MinSteps must be at least 1");
        if (ReductionFactor < 2) throw new ArgumentOutOfRangeException(nameof(ReductionFactor), "MblmExperimentSettings.ReductionFactor must be at least 2");
        if (Rungs is < 1 or > 10) throw new ArgumentOutOfRangeException(nameof(Rungs), "MblmExperimentSettings.Rungs must be in 1..10");
        if (CheckpointEvery < 0) throw new ArgumentOutOfRangeException(nameof(CheckpointEvery), "MblmExperimentSettings.CheckpointEvery must be >= 0");
    }
}

/// <summary>What an experiment optimises: a measure of a fitted model on the validation data.</summary>
/// <param name="Name">Its name in tables and the CSV, e.g. <c>MacroAccuracy</c>.</param>
/// <param name="HigherIsBetter">Whether larger values are better.</param>
/// <param name="Measure">The measure of a fitted model on the validation data.</param>
public sealed record MblmObjective(string Name, bool HigherIsBetter, Func<MLContext, ITransformer, IDataView, double> Measure)
{
    /// <summary>Validation bits per byte of a language model (lower is better).</summary>
    public static MblmObjective BitsPerByte(string inputColumnName = "Text") =>
        new("BitsPerByte", false, (ml, model, data) => ml.Mblm().Evaluate(model.Transform(data), inputColumnName).BitsPerByte);

    /// <summary>Macro-accuracy of a classifier (ML.NET's multiclass evaluator; higher is better).</summary>
    public static MblmObjective MacroAccuracy(string labelColumnName = "Label") =>
        new("MacroAccuracy", true, (ml, model, data) => ml.MulticlassClassification.Evaluate(model.Transform(data), labelColumnName).MacroAccuracy);

    /// <summary>Micro-accuracy (the fraction right) of a classifier (higher is better).</summary>
    public static MblmObjective MicroAccuracy(string labelColumnName = "Label") =>
        new("MicroAccuracy", true, (ml, model, data) => ml.MulticlassClassification.Evaluate(model.Transform(data), labelColumnName).MicroAccuracy);

    internal bool Better(double a, double b) => HigherIsBetter ? a > b : a < b;
}

/// <summary>The state of one trial run (a trial at one rung).</summary>
public enum MblmTrialStatus
{
    /// <summary>Started and not finished (running, or interrupted by a crash: a resume continues it).</summary>
    Running,
    /// <summary>Fitted and measured.</summary>
    Completed,
    /// <summary>Failed (an exception, or a non-finite objective: diverged); the experiment went on without it.</summary>
    Failed,
    /// <summary>Stopped by the time budget or cancellation, checkpointed; a resume continues it.</summary>
    Stopped,
}

/// <summary>One trial run: trial <paramref name="Id"/> trained to <paramref name="Steps"/> (ASHA: at rung <paramref name="Rung"/>).</summary>
public sealed record MblmTrialRecord(int Id, int Rung, long? Steps, IReadOnlyDictionary<string, object> Parameters, MblmTrialStatus Status,
    double Objective, double Seconds, string? Error = null)
{
    /// <summary>Seconds since the experiment started (all its sessions) when this run ended.</summary>
    public double EndedAt { get; init; }
}

/// <summary>What happened, for monitors.</summary>
public enum MblmExperimentEventKind
{
    /// <summary>A trial run started (or resumed after a restart).</summary>
    TrialStarted,
    /// <summary>A trial run completed.</summary>
    TrialCompleted,
    /// <summary>A trial run failed (reported and skipped).</summary>
    TrialFailed,
    /// <summary>A trial run was stopped by the time budget or cancellation.</summary>
    TrialStopped,
    /// <summary>A completed run is the best so far.</summary>
    NewBest,
}

/// <summary>An event of an experiment: what happened, to which trial run, and the best so far.</summary>
public sealed record MblmExperimentEvent(MblmExperimentEventKind Kind, MblmTrialRecord Trial, MblmTrialRecord? Best);

/// <summary>
/// An AutoML-style experiment over one MBLM estimator (any of them: the language model, the text classifier, the answer
/// classifier): a search space over its options and model shape, a tuner (random, grid, ASHA), a time budget enforced
/// inside the running trial, failed or diverged trials reported and skipped, a checkpoint folder per trial, a journal that
/// lets a killed experiment resume, monitor events, and the results as a table, CSV and plot (<see cref="MblmExperimentResult{TTransformer}"/>).
/// Create it with <c>mlContext.Mblm().LanguageModelExperiment(...)</c>, <c>TextClassifierExperiment</c> or
/// <c>AnswerClassifierExperiment</c>, or with this constructor for any estimator factory.
/// </summary>
/// <typeparam name="TOptions">The estimator's options.</typeparam>
/// <typeparam name="TTransformer">The transformer it fits.</typeparam>
public sealed class MblmExperiment<TOptions, TTransformer>
    where TOptions : MblmTrainingOptions
    where TTransformer : class, ITransformer, IDisposable
{
    private const string JournalFile = "trials.jsonl", SettingsFile = "experiment.json";
    private readonly MLContext _ml;
    private readonly Func<TOptions, MblmTrainerBase<TOptions, TTransformer>> _estimator;
    private readonly TOptions _baseOptions;
    private readonly IDataView _train, _validation;

    /// <param name="mlContext">The context (log, device).</param>
    /// <param name="estimator">Makes the estimator of a trial from its options.</param>
    /// <param name="baseOptions">The options every trial starts from (trial 0 of the random tuner runs them as they are).</param>
    /// <param name="space">What is searched.</param>
    /// <param name="objective">What is optimised, measured on <paramref name="validation"/>.</param>
    /// <param name="train">Training data (as the estimator's Fit takes it: label keys mapped, images loaded, …).</param>
    /// <param name="validation">Validation data, same schema.</param>
    /// <param name="settings">Tuner, budget, folder.</param>
    public MblmExperiment(MLContext mlContext, Func<TOptions, MblmTrainerBase<TOptions, TTransformer>> estimator, TOptions baseOptions,
        MblmSearchSpace space, MblmObjective objective, IDataView train, IDataView validation, MblmExperimentSettings settings)
    {
        _ml = mlContext ?? throw new ArgumentNullException(nameof(mlContext));
        _estimator = estimator ?? throw new ArgumentNullException(nameof(estimator));
        _baseOptions = baseOptions ?? throw new ArgumentNullException(nameof(baseOptions));
        Space = space ?? throw new ArgumentNullException(nameof(space));
        Objective = objective ?? throw new ArgumentNullException(nameof(objective));
        _train = train ?? throw new ArgumentNullException(nameof(train));
        _validation = validation ?? throw new ArgumentNullException(nameof(validation));
        Settings = settings ?? throw new ArgumentNullException(nameof(settings));
        settings.Check();
        foreach (var d in space.Dimensions) MblmSearchSpace.Apply(baseOptions, new Dictionary<string, object> { [d.Name] = d.Draw(new Random(0)) }); // names checked now
    }

    /// <summary>The search space.</summary>
    public MblmSearchSpace Space { get; }
    /// <summary>The objective.</summary>
    public MblmObjective Objective { get; }
    /// <summary>The settings.</summary>
    public MblmExperimentSettings Settings { get; }
    /// <summary>Receives every event (started, completed, failed, stopped, new best).</summary>
    public IProgress<MblmExperimentEvent>? Monitor { get; set; }

    /// <summary>
    /// Runs (or resumes) the experiment until the tuner has nothing left, <see cref="MblmExperimentSettings.MaxTrials"/> are
    /// done, or the time budget is spent. Returns every trial run and the best model (fitted again from its checkpoint
    /// when the best run finished in an earlier session). <paramref name="cancellationToken"/> stops it within one training
    /// step, with the running trial checkpointed (then <see cref="OperationCanceledException"/>).
    /// </summary>
    public MblmExperimentResult<TTransformer> Run(CancellationToken cancellationToken = default)
    {
        System.IO.Directory.CreateDirectory(Settings.Directory);
        var records = OpenJournal();
        var clock = Stopwatch.StartNew();
        double before = records.Count == 0 ? 0 : records.Max(r => r.EndedAt);
        double Now() => before + clock.Elapsed.TotalSeconds;
        TTransformer? bestModel = null;
        MblmTrialRecord? best = Best(records);
        try
        {
            while (NextJob(records) is var (id, rung, parameters))
            {
                var remaining = Settings.TimeBudget is { } budget ? budget - clock.Elapsed : (TimeSpan?)null;
                if (remaining <= TimeSpan.Zero) break;
                var record = RunTrial(id, rung, parameters, remaining, Now, cancellationToken, out var model);
                records.RemoveAll(r => r.Id == id && r.Rung == rung); // a run continued (crashed, stopped) has one record
                records.Add(record);
                if (record.Status == MblmTrialStatus.Completed && (best is null || Objective.Better(record.Objective, best.Objective)))
                {
                    bestModel?.Dispose();
                    (best, bestModel) = (record, model);
                    Report(MblmExperimentEventKind.NewBest, record, best);
                }
                else model?.Dispose();
                if (record.Status == MblmTrialStatus.Stopped)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    break; // the time budget
                }
            }
            if (best is not null && bestModel is null)
                bestModel = RefitFromCheckpoint(best, cancellationToken);
            return new MblmExperimentResult<TTransformer>(records.OrderBy(r => r.EndedAt).ToList(), best, bestModel, Objective);
        }
        catch
        {
            bestModel?.Dispose();
            throw;
        }
    }

    private MblmTrialRecord? Best(IEnumerable<MblmTrialRecord> records) => records.Where(r => r.Status == MblmTrialStatus.Completed)
        .Aggregate((MblmTrialRecord?)null, (b, r) => b is null || Objective.Better(r.Objective, b.Objective) ? r : b);

    // ---- tuners ----

    private (int Id, int Rung, IReadOnlyDictionary<string, object> Parameters)? NextJob(List<MblmTrialRecord> records)
    {
        // An interrupted run (a crash, the budget, a cancellation) is continued first: its checkpoint resumes it.
        if (records.FirstOrDefault(r => r.Status is MblmTrialStatus.Running or MblmTrialStatus.Stopped
                && !records.Any(o => o.Id == r.Id && o.Rung == r.Rung && o.Status is MblmTrialStatus.Completed or MblmTrialStatus.Failed)) is { } open)
            return (open.Id, open.Rung, open.Parameters);
        if (Settings.Tuner == MblmTuner.Asha)
        {
            for (int rung = Settings.Rungs - 2; rung >= 0; rung--)
            {
                var done = records.Where(r => r.Rung == rung && r.Status == MblmTrialStatus.Completed).ToList();
                var top = (Objective.HigherIsBetter ? done.OrderByDescending(r => r.Objective) : done.OrderBy(r => r.Objective))
                    .ThenBy(r => r.Id).Take(done.Count / Settings.ReductionFactor);
                if (top.FirstOrDefault(r => !records.Any(o => o.Id == r.Id && o.Rung == rung + 1)) is { } promote)
                    return (promote.Id, rung + 1, promote.Parameters);
            }
        }
        int next = records.Count == 0 ? 0 : records.Max(r => r.Id) + 1;
        if (next >= Settings.MaxTrials) return null;
        if (Settings.Tuner == MblmTuner.Grid)
            return Space.Grid(Settings.GridPointsPerRange).Skip(next).FirstOrDefault() is { } point ? (next, 0, MblmSearchSpace.Resolve<TOptions>(point)) : null;
        var parameters = next == 0 && Settings.Tuner == MblmTuner.Random ? new Dictionary<string, object>() : Space.Sample(new Random(TrialSeed(next)));
        return (next, 0, MblmSearchSpace.Resolve<TOptions>(parameters));
    }

    // The same in every process (HashCode is randomised per process, so it is not used here).
    private int TrialSeed(int id) => (int)((uint)unchecked(Settings.Seed * 1_000_003 + id * 7919 + 17) & int.MaxValue);

    // ---- one trial run ----

    private TOptions OptionsFor(int id, int rung, IReadOnlyDictionary<string, object> parameters)
    {
        var o = MblmSearchSpace.Apply(_baseOptions, parameters) with
        {
            CheckpointDirectory = Path.Combine(Settings.Directory, string.Create(CultureInfo.InvariantCulture, $"trial-{id:D4}")),
            CheckpointEvery = Settings.CheckpointEvery,
        };
        if (Settings.Tuner == MblmTuner.Asha)
        {
            o = o with
            {
                MaxSteps = Settings.StepsAt(rung),
                MaxEpochs = int.MaxValue / 2,
                Schedule = LearningRateScheduleKind.WarmupStableDecay,
                WarmupSteps = o.WarmupSteps ?? (long)Math.Floor(Settings.MinSteps * o.WarmupFraction),
            };
        }
        return o;
    }

    private MblmTrialRecord RunTrial(int id, int rung, IReadOnlyDictionary<string, object> parameters, TimeSpan? remaining, Func<double> now,
        CancellationToken cancellationToken, out TTransformer? model)
    {
        model = null;
        var started = Stopwatch.StartNew();
        long? steps = Settings.Tuner == MblmTuner.Asha ? Settings.StepsAt(rung) : _baseOptions.MaxSteps;
        var running = new MblmTrialRecord(id, rung, steps, parameters, MblmTrialStatus.Running, double.NaN, 0) { EndedAt = now() };
        Append(running);
        Report(MblmExperimentEventKind.TrialStarted, running, null);
        using var budget = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (remaining is { } r) budget.CancelAfter(r);
        MblmTrialRecord Ended(MblmTrialStatus status, double objective, string? error) =>
            running with { Status = status, Objective = objective, Seconds = started.Elapsed.TotalSeconds, Error = error, EndedAt = now() };
        MblmTrialRecord result;
        try
        {
            var estimator = _estimator(OptionsFor(id, rung, parameters));
            estimator.UseSeed(TrialSeed(id));
            estimator.Cancellation = budget.Token;
            model = estimator.Fit(_train);
            double objective = Objective.Measure(_ml, model, _validation);
            result = double.IsFinite(objective)
                ? Ended(MblmTrialStatus.Completed, objective, null)
                : Ended(MblmTrialStatus.Failed, objective, $"diverged: {Objective.Name} is {objective}");
        }
        catch (OperationCanceledException) when (budget.IsCancellationRequested)
        {
            result = Ended(MblmTrialStatus.Stopped, double.NaN, cancellationToken.IsCancellationRequested ? "cancelled" : "time budget spent");
        }
        catch (Exception e) when (e is not (OutOfMemoryException or OperationCanceledException))
        {
            result = Ended(MblmTrialStatus.Failed, double.NaN, e.Message.ReplaceLineEndings(" "));
        }
        if (result.Status != MblmTrialStatus.Completed)
        {
            model?.Dispose();
            model = null;
        }
        Append(result);
        Report(result.Status switch
        {
            MblmTrialStatus.Completed => MblmExperimentEventKind.TrialCompleted,
            MblmTrialStatus.Stopped => MblmExperimentEventKind.TrialStopped,
            _ => MblmExperimentEventKind.TrialFailed,
        }, result, null);
        return result;
    }

    // The best run ended in an earlier session: its checkpoint folder has the finished run, which Fit returns without training.
    private TTransformer RefitFromCheckpoint(MblmTrialRecord best, CancellationToken cancellationToken)
    {
        var estimator = _estimator(OptionsFor(best.Id, best.Rung, best.Parameters));
        estimator.UseSeed(TrialSeed(best.Id));
        estimator.Cancellation = cancellationToken;
        return estimator.Fit(_train);
    }

    private void Report(MblmExperimentEventKind kind, MblmTrialRecord trial, MblmTrialRecord? best) => Monitor?.Report(new MblmExperimentEvent(kind, trial, best));

    // ---- the journal ----

    private JsonObject Description() => new()
    {
        ["format"] = 1,
        ["tuner"] = Settings.Tuner.ToString(),
        ["seed"] = Settings.Seed,
        ["space"] = Space.ToString(),
        ["objective"] = Objective.Name,
        ["grid_points_per_range"] = Settings.GridPointsPerRange,
        ["min_steps"] = Settings.MinSteps,
        ["reduction_factor"] = Settings.ReductionFactor,
        ["rungs"] = Settings.Rungs,
        ["options"] = Persistence.StageWriter.ToJson(_baseOptions.Settings()),
        ["model"] = JsonNode.Parse(Config.ConfigWriter.ToJson(_baseOptions.ModelShape)),
    };

    private List<MblmTrialRecord> OpenJournal()
    {
        string settingsPath = Path.Combine(Settings.Directory, SettingsFile), journalPath = Path.Combine(Settings.Directory, JournalFile);
        var description = Description();
        if (File.Exists(settingsPath))
        {
            JsonNode? saved;
            try { saved = JsonNode.Parse(ReadBounded(settingsPath, 1 << 20)); }
            catch (JsonException e) { throw new MblmFormatException(settingsPath, null, $"not a valid experiment description: {e.Message}", e); }
            var differences = RunFingerprint.Differences(saved, description);
            if (differences.Count > 0)
                throw new InvalidOperationException($"the folder '{Settings.Directory}' holds another experiment: " +
                    string.Join("; ", differences.Take(6).Select(d => $"{d.Setting} is {d.Checkpoint} there, {d.Current} here")) +
                    " (use another folder, or the same settings to resume it)");
        }
        else
        {
            AtomicFile.WriteAllText(settingsPath, description.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        var records = new List<MblmTrialRecord>();
        if (!File.Exists(journalPath)) return records;
        byte[] bytes = ReadBounded(journalPath, 64 << 20);
        int end = Array.LastIndexOf(bytes, (byte)'\n') + 1;
        if (end < bytes.Length)
        {
            // A kill while appending left a torn last line: it is cut off (its run is continued), so new lines start clean.
            using var stream = new FileStream(journalPath, FileMode.Open, FileAccess.Write);
            stream.SetLength(end);
        }
        var lines = System.Text.Encoding.UTF8.GetString(bytes, 0, end).Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            try
            {
                var r = FromJson(JsonNode.Parse(lines[i])!.AsObject());
                records.RemoveAll(o => o.Id == r.Id && o.Rung == r.Rung); // the newest line of a run wins
                records.Add(r);
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or KeyNotFoundException or NullReferenceException or ArgumentException)
            {
                throw new MblmFormatException(journalPath, null, $"line {i + 1} is not a trial record: {e.Message}", e);
            }
        }
        return records;
    }

    private void Append(MblmTrialRecord record)
    {
        string path = Path.Combine(Settings.Directory, JournalFile);
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        var bytes = System.Text.Encoding.UTF8.GetBytes(ToJson(record).ToJsonString() + "\n");
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    private static JsonObject ToJson(MblmTrialRecord r)
    {
        var p = new JsonObject();
        foreach (var (k, v) in r.Parameters) p[k] = JsonValue.Create(v is double d ? (object)d : v is string s ? s : System.Convert.ToDouble(v, CultureInfo.InvariantCulture));
        return new JsonObject
        {
            ["id"] = r.Id, ["rung"] = r.Rung, ["steps"] = r.Steps, ["status"] = r.Status.ToString(),
            ["objective"] = double.IsFinite(r.Objective) ? r.Objective : null, ["seconds"] = r.Seconds, ["ended_at"] = r.EndedAt,
            ["error"] = r.Error, ["parameters"] = p,
        };
    }

    private static MblmTrialRecord FromJson(JsonObject o)
    {
        var parameters = new Dictionary<string, object>();
        foreach (var (k, v) in o["parameters"]!.AsObject())
            parameters[k] = v!.GetValueKind() == JsonValueKind.String ? (object)v.GetValue<string>() : v.GetValue<double>();
        int id = o["id"]!.GetValue<int>(), rung = o["rung"]!.GetValue<int>();
        if (id is < 0 or > 1_000_000 || rung is < 0 or > 10) throw new FormatException($"id {id} or rung {rung} out of range");
        return new MblmTrialRecord(id, rung, o["steps"]?.GetValue<long>(), parameters, Enum.Parse<MblmTrialStatus>(o["status"]!.GetValue<string>()),
            o["objective"]?.GetValue<double>() ?? double.NaN, o["seconds"]!.GetValue<double>(), o["error"]?.GetValue<string>())
        { EndedAt = o["ended_at"]!.GetValue<double>() };
    }

    private static byte[] ReadBounded(string path, long limit)
    {
        var info = new FileInfo(path);
        if (info.Length > limit) throw new MblmFormatException(path, null, $"is {info.Length:N0} bytes, more than the {limit:N0} an experiment file may have");
        return File.ReadAllBytes(path);
    }

}
