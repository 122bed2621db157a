namespace Mblm.Training;

/// <summary>Immutable training settings (the reference's <c>train</c> section and more). Defaults follow the paper.</summary>
public sealed record TrainerOptions
{
    /// <summary>Optimiser steps to take in total (each of <see cref="GradientAccumulation"/> micro-batches).</summary>
    public required long Steps { get; init; }
    /// <summary>Samples per micro-batch.</summary>
    public int BatchSize { get; init; } = 4;
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Adam β₁.</summary>
    public double Beta1 { get; init; } = 0.9;
    /// <summary>Adam β₂ (the reference uses 0.95).</summary>
    public double Beta2 { get; init; } = 0.95;
    /// <summary>Use AdamW (decoupled weight decay) instead of the reference's Adam.</summary>
    public bool AdamW { get; init; }
    /// <summary>Weight decay (AdamW only).</summary>
    public double WeightDecay { get; init; } = 0.01;
    /// <summary>Fraction of optimiser steps for the linear warm-up from 0.1× (reference: 0.1).</summary>
    public double WarmupFraction { get; init; } = 0.1;
    /// <summary>Warm-up steps, when set (instead of <see cref="WarmupFraction"/>).</summary>
    public long? WarmupSteps { get; init; }
    /// <summary>
    /// What follows the warm-up: the reference's cosine (default) or warm-up–stable–decay
    /// (<see cref="LearningRateScheduleKind.WarmupStableDecay"/>). Under the latter, the run's step count is not part of what
    /// a resume must match: a run with more steps continues from a checkpoint taken before the shorter run's decay (the
    /// trainer writes one at every run's decay start), which is how a trial is extended.
    /// </summary>
    public LearningRateScheduleKind Schedule { get; init; }
    /// <summary>With warm-up–stable–decay: the fraction of steps at the end that decay linearly to 0.</summary>
    public double DecayFraction { get; init; } = 0.2;
    /// <summary>Micro-batches per optimiser step; the loss is divided by this count.</summary>
    public int GradientAccumulation { get; init; } = 1;
    /// <summary>Gradient-norm clipping threshold, or null for none (the paper: 1.0).</summary>
    public double? GradientClipping { get; init; } = 1.0;
    /// <summary>Seed of model-independent randomness (data order, dropout).</summary>
    public long Seed { get; init; }
    /// <summary>Visit training samples in a seeded random order per epoch.</summary>
    public bool Shuffle { get; init; }
    /// <summary>Write a checkpoint every this many optimiser steps (0 = only at the end when a directory is set).</summary>
    public long CheckpointEvery { get; init; }
    /// <summary>Directory for <c>weights.safetensors</c> and <c>checkpoints/step-NNNNNNNN/</c>; null = keep in memory only.</summary>
    public string? OutputDirectory { get; init; }
    /// <summary>Evaluate validation bits per byte every this many optimiser steps (0 = only at the end).</summary>
    public long ValidateEvery { get; init; }
    /// <summary>
    /// The training data's identity (<see cref="DataFingerprint.Of"/>), or null. When set it is part of the run's
    /// fingerprint, so a resume over other data is refused; the CLI leaves it unset (its data is a file it names).
    /// </summary>
    public DataFingerprint? Data { get; init; }
    /// <summary>Cap on validation samples per evaluation (null = all).</summary>
    public long? MaxValidationSamples { get; init; }
    /// <summary>
    /// Mixed precision by explicit casts (TorchSharp has no autocast): forward and backward run on a bfloat16 copy of the
    /// model; gradients are cast back onto the fp32 master weights, which the optimiser updates. Meant for CUDA; it also
    /// runs on CPU (tested there for its mechanics only). Untested on a GPU: none was available.
    /// </summary>
    public bool Bf16 { get; init; }

    /// <summary>
    /// Threads libtorch uses for its operations (<c>torch.set_num_threads</c>, process-wide, set when training starts), or
    /// null for libtorch's default (one per core). Fewer threads than cores leave room for other work on shared servers.
    /// </summary>
    public int? Threads { get; init; }

    /// <summary>
    /// Stop after this many validations in a row without a better validation figure (0 = never stop early). Needs a
    /// validation set and <see cref="ValidateEvery"/>.
    /// </summary>
    public int EarlyStoppingPatience { get; init; }

    /// <summary>
    /// With a validation set: keep (in memory) the weights of the best validation and restore them when training ends, so
    /// the model returned is the best one seen. With an output directory each new best is also checkpointed, so a resumed
    /// run (even one that had finished or stopped early) restores the best of the whole run, not only of its own steps.
    /// </summary>
    public bool RestoreBestWeights { get; init; }

    /// <summary>Non-finite losses in a row after which training stops with an error (each is skipped with a warning).</summary>
    public int MaxConsecutiveNonFinite { get; init; } = 5;

    /// <summary>Checks the options; throws <see cref="ArgumentException"/> naming the option.</summary>
    /// <summary>The learning-rate schedule these options describe.</summary>
    public LearningRateSchedule LearningRates => new(LearningRate, Steps, WarmupFraction)
    {
        Kind = Schedule, DecayFraction = DecayFraction, FixedWarmupSteps = WarmupSteps,
    };

    public TrainerOptions Validate()
    {
        if (Steps <= 0) throw new ArgumentException($"Steps must be positive, got {Steps}", nameof(Steps));
        if (EarlyStoppingPatience < 0) throw new ArgumentException($"EarlyStoppingPatience must be ≥ 0, got {EarlyStoppingPatience}", nameof(EarlyStoppingPatience));
        if (BatchSize <= 0) throw new ArgumentException($"BatchSize must be positive, got {BatchSize}", nameof(BatchSize));
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new ArgumentException($"LearningRate must be positive and finite, got {LearningRate}", nameof(LearningRate));
        if (GradientAccumulation <= 0) throw new ArgumentException("GradientAccumulation must be positive", nameof(GradientAccumulation));
        if (WarmupFraction is < 0 or >= 1) throw new ArgumentException("WarmupFraction must be in [0, 1)", nameof(WarmupFraction));
        if (WarmupSteps is < 0) throw new ArgumentException($"WarmupSteps must be non-negative or null, got {WarmupSteps}", nameof(WarmupSteps));
        if (DecayFraction is <= 0 or > 1 || double.IsNaN(DecayFraction)) throw new ArgumentException($"DecayFraction must be in (0, 1], got {DecayFraction}", nameof(DecayFraction));
        if (GradientClipping is double clip && !(clip > 0 && double.IsFinite(clip))) throw new ArgumentException($"GradientClipping must be positive and finite, or null; got {clip}",
            nameof(GradientClipping));
        if (Threads is < 1 or > 1024) throw new ArgumentException($"Threads must be in [1, 1024] or null, got {Threads}", nameof(Threads));
        if (CheckpointEvery < 0 || ValidateEvery < 0) throw new ArgumentException("CheckpointEvery and ValidateEvery must be >= 0");
        return this;
    }
}

/// <summary>A progress report, raised after every optimiser step (and after validations).</summary>
/// <param name="Step">Optimiser steps completed.</param>
/// <param name="TotalSteps">Optimiser steps planned.</param>
/// <param name="Loss">Mean training loss (nats) of the step's micro-batches.</param>
/// <param name="LearningRate">Learning rate the step used.</param>
/// <param name="BytesPerSecond">Scored bytes per second since the run (or resume) started.</param>
/// <param name="Eta">Estimated time to the last step.</param>
/// <param name="ValidationBitsPerByte">Validation bits per byte when this report follows a validation.</param>
/// <param name="Warning">A skipped step's reason, when the step was skipped.</param>
/// <param name="ValidationLoss">Validation class cross-entropy (nats) when this report follows a classification validation.</param>
public sealed record TrainingProgress(long Step, long TotalSteps, double Loss, double LearningRate, double BytesPerSecond, TimeSpan Eta,
    double? ValidationBitsPerByte = null, string? Warning = null, double? ValidationLoss = null);

/// <summary>Outcome of <see cref="Trainer.Train"/>.</summary>
/// <param name="Steps">Optimiser steps completed (including those before a resume).</param>
/// <param name="FinalLoss">Training loss of the last step taken in this run (NaN when the run had nothing left to do).</param>
/// <param name="ValidationBitsPerByte">Validation bits per byte at the end, when a validation set was given.</param>
/// <param name="ResumedFromStep">The checkpoint step training resumed from, or null.</param>
public sealed record TrainingResult(long Steps, double FinalLoss, double? ValidationBitsPerByte, long? ResumedFromStep)
{
    /// <summary>Warnings of the run (also reported through the progress callback): damaged checkpoints skipped, leftovers removed, …</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary>The last validation class cross-entropy (nats) of a classification run, or of its best step when the best weights were restored.</summary>
    public double? ValidationLoss { get; init; }

    /// <summary>The step whose weights the model holds when <see cref="TrainerOptions.RestoreBestWeights"/> restored them; else null.</summary>
    public long? BestStep { get; init; }

    /// <summary>Whether training stopped early (<see cref="TrainerOptions.EarlyStoppingPatience"/>) before <see cref="Steps"/> reached the planned steps.</summary>
    public bool StoppedEarly { get; init; }
}
