namespace Mblm.Training;

/// <summary>The shape of the learning-rate schedule after the warm-up.</summary>
public enum LearningRateScheduleKind
{
    /// <summary>The reference's schedule: cosine from the peak to 0 over the steps after the warm-up.</summary>
    WarmupCosine,
    /// <summary>
    /// Warm-up, stable, decay: the peak rate until the last <see cref="LearningRateSchedule.DecayFraction"/> of the steps,
    /// then linear to 0. Everything before the decay does not depend on the total, so a run can be extended: a longer run
    /// continues from the checkpoint taken where the shorter one started decaying (what successive halving relies on).
    /// </summary>
    WarmupStableDecay,
}

/// <summary>
/// The learning rate of every optimiser step. By default the reference's schedule (<c>SequentialLR(LinearLR(0.1 → 1,
/// warmup), CosineAnnealingLR(T_max = steps − warmup))</c>): linear warm-up from 0.1× over the first
/// <c>floor(steps · warmupFraction)</c> optimiser steps, then cosine to 0. <see cref="Kind"/> selects warm-up–stable–decay.
/// </summary>
public sealed record LearningRateSchedule(double BaseLearningRate, long TotalSteps, double WarmupFraction = 0.1)
{
    /// <summary>What follows the warm-up (default: the reference's cosine).</summary>
    public LearningRateScheduleKind Kind { get; init; }

    /// <summary>With <see cref="LearningRateScheduleKind.WarmupStableDecay"/>: the fraction of steps at the end that decay to 0.</summary>
    public double DecayFraction { get; init; } = 0.2;

    /// <summary>Warm-up steps when set (then <see cref="WarmupFraction"/> is not used), e.g. the same warm-up for runs of different lengths.</summary>
    public long? FixedWarmupSteps { get; init; }

    /// <summary>Number of warm-up steps.</summary>
    public long WarmupSteps => FixedWarmupSteps ?? (long)Math.Floor(TotalSteps * WarmupFraction);

    /// <summary>The first step of the decay (warm-up–stable–decay), or <see cref="TotalSteps"/> for the cosine schedule.</summary>
    public long DecayStart => Kind == LearningRateScheduleKind.WarmupStableDecay ? DecayStartOf(TotalSteps, DecayFraction) : TotalSteps;

    /// <summary>The first decay step of a warm-up–stable–decay run of <paramref name="totalSteps"/> steps.</summary>
    public static long DecayStartOf(long totalSteps, double decayFraction) => totalSteps - (long)Math.Ceiling(totalSteps * decayFraction);

    /// <summary>Learning rate for optimiser step <paramref name="step"/> (0-based: the rate the step is taken with).</summary>
    public double At(long step)
    {
        long warmup = WarmupSteps;
        if (step < warmup) return BaseLearningRate * (0.1 + 0.9 * step / warmup);
        if (Kind == LearningRateScheduleKind.WarmupStableDecay)
        {
            long decayStart = Math.Max(DecayStart, warmup);
            if (step < decayStart) return BaseLearningRate;
            return BaseLearningRate * Math.Max(0.0, (double)(TotalSteps - step) / Math.Max(1, TotalSteps - decayStart));
        }
        long cosineSteps = Math.Max(1, TotalSteps - warmup);
        double progress = Math.Min(1.0, (double)(step - warmup) / cosineSteps);
        return BaseLearningRate * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
